// wit-bindgen's export glue is `unsafe` extern code expanded in this crate.
#![allow(unsafe_code)]
//! A component of `scalegate:policy@0.3.0`, a version the host does not
//! serve: loading it must fail with the versions the host does serve.

wit_bindgen::generate!({ world: "policy", path: "wit" });

struct Future;

impl Guest for Future {
    fn evaluate(snapshot: String) -> String {
        scalegate::policy::host::log(&snapshot);
        snapshot
    }
}

export!(Future);
