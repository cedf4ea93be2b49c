// wit-bindgen's export glue is `unsafe` extern code expanded in this crate.
#![allow(unsafe_code)]
//! A valid component of another world (`other:thing/other`): the host must
//! reject it with a message naming the mismatch.

wit_bindgen::generate!({ world: "other", path: "wit" });

struct Other;

impl Guest for Other {
    fn evaluate(input: String) -> String {
        input
    }
}

export!(Other);
