//! Host tests against real servers they start, stop and restart themselves
//! on free loopback ports: Prometheus, a Kafka-API broker (tansu),
//! nats-server, redis-server. `scripts/install-test-tools.sh` installs them;
//! a missing one fails the test with a message saying so.

#[path = "../support/mod.rs"]
mod support;

mod failover;
mod kafka;
mod signals;
