//! `scalegate new NAME --lang rust|python|js [--dir DIR]`: a standalone
//! policy project that builds outside this repository — a starter policy on
//! the language's SDK, a build script, the package file, `cases/` with
//! passing cases and a README. The templates, the SDKs and the WIT contract
//! are embedded in this binary; the SDK is vendored into the project (until
//! it is installed from a registry).

use super::common::Failure;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The policy's name: lowercase letters, digits and `-`, starting with a letter (at most 63).
    pub name: String,
    /// The language of the policy.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to create the project directory NAME.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// A file of the project: its path, its text, whether it is a script.
struct File {
    path: String,
    text: String,
    executable: bool,
}

macro_rules! embedded {
    ($($path:literal => $source:literal),* $(,)?) => {
        &[$(($path, include_str!($source))),*]
    };
}

/// The contract, as every language's project carries it.
const WIT: &[(&str, &str)] = embedded! {
    "types.wit" => "../../../wit/types.wit",
    "resources.wit" => "../../../wit/resources.wit",
    "host.wit" => "../../../wit/host.wit",
    "world.wit" => "../../../wit/world.wit",
};

const CASES: &[(&str, &str)] = embedded! {
    "cases/needs-three.yaml" => "../../templates/common/case.yaml",
    "cases/stale-metric.yaml" => "../../templates/common/stale.yaml",
};

const RUST: &[(&str, &str)] = embedded! {
    "Cargo.toml" => "../../templates/rust/Cargo.toml",
    "src/lib.rs" => "../../templates/rust/lib.rs",
    "build.sh" => "../../templates/rust/build.sh",
    "vendor/scalegate-policy-sdk/Cargo.toml" => "../../templates/rust/sdk.Cargo.toml",
    "vendor/scalegate-policy-sdk/src/lib.rs" => "../../../plugins/sdk/src/lib.rs",
    "vendor/scalegate-policy-sdk/src/helpers.rs" => "../../../plugins/sdk/src/helpers.rs",
    "vendor/scalegate-policy-sdk/src/log.rs" => "../../../plugins/sdk/src/log.rs",
    "vendor/scalegate-policy-sdk/src/params.rs" => "../../../plugins/sdk/src/params.rs",
    "vendor/scalegate-policy-sdk/src/state.rs" => "../../../plugins/sdk/src/state.rs",
    "vendor/scalegate-policy-sdk/src/testing.rs" => "../../../plugins/sdk/src/testing.rs",
    "vendor/scalegate-snapshot/Cargo.toml" => "../../templates/rust/snapshot.Cargo.toml",
    "vendor/scalegate-snapshot/src/lib.rs" => "../../../plugins/snapshot/src/lib.rs",
    "vendor/scalegate-snapshot/src/wit.rs" => "../../../plugins/snapshot/src/wit.rs",
};

const PYTHON: &[(&str, &str)] = embedded! {
    "app.py" => "../../templates/python/app.py",
    "build.sh" => "../../templates/python/build.sh",
    "pyproject.toml" => "../../templates/python/pyproject.toml",
    "scalegate_policy/__init__.py" => "../../../plugins/python/sdk/scalegate_policy/__init__.py",
    "scalegate_policy/schema.py" => "../../../plugins/python/sdk/scalegate_policy/schema.py",
};

const JS: &[(&str, &str)] = embedded! {
    "policy.js" => "../../templates/js/policy.js",
    "build.sh" => "../../templates/js/build.sh",
    "package.json" => "../../templates/js/package.json",
    "lib/scalegate-policy.js" => "../../../plugins/js/sdk/index.js",
};

const README: &str = include_str!("../../templates/common/README.md");
const GITIGNORE: &str = include_str!("../../templates/common/gitignore");

pub fn run(args: &NewArgs) -> Result<(), Failure> {
    check_name(&args.name).map_err(Failure::usage)?;
    let root = args.dir.join(&args.name);
    if root.exists() && std::fs::read_dir(&root).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Failure::usage(format!("{} already exists and is not empty", root.display())));
    }
    let files = project(&args.name, args.lang);
    for file in &files {
        write(&root, file)
            .map_err(|e| Failure::cannot_create(format!("writing {}: {e}", root.join(&file.path).display())))?;
    }
    println!("created {} ({} files)", root.display(), files.len());
    println!("next: cd {} && {}", root.display(), first_step(args.lang));
    Ok(())
}

fn first_step(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "./build.sh && scalegate test *.wasm --cases cases",
        Lang::Python => "./build.sh && scalegate test *.wasm --cases cases",
        Lang::Js => "npm install && ./build.sh && scalegate test *.wasm --cases cases",
    }
}

/// Kubernetes-label-like, and a valid crate, package and file name.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "policy name {name:?}: use lowercase letters, digits and '-', starting with a letter, at most 63 characters"
        ))
    }
}

/// Every file of a new project, rendered.
fn project(name: &str, lang: Lang) -> Vec<File> {
    let vars = [("{{name}}", name.to_string()), ("{{crate}}", name.replace('-', "_")), ("{{type}}", type_name(name))];
    let render = |text: &str| vars.iter().fold(text.to_string(), |t, (k, v)| t.replace(k, v));
    let (own, wit_dir): (&[(&str, &str)], Option<&str>) = match lang {
        Lang::Rust => (RUST, Some("vendor/scalegate-policy-sdk/wit")),
        Lang::Python => (PYTHON, Some("wit")),
        Lang::Js => (JS, Some("wit")),
    };
    let mut files: Vec<File> = own
        .iter()
        .chain(CASES)
        .map(|(path, text)| {
            // the SDKs' own sources are copied as they are; templates are rendered
            let vendored =
                path.starts_with("vendor/") || path.starts_with("scalegate_policy/") || path.starts_with("lib/");
            File {
                path: path.to_string(),
                text: if vendored { text.to_string() } else { render(text) },
                executable: path.ends_with(".sh"),
            }
        })
        .collect();
    if let Some(dir) = wit_dir {
        files.extend(WIT.iter().map(|(file, text)| File {
            path: format!("{dir}/{file}"),
            text: text.to_string(),
            executable: false,
        }));
    }
    files.push(File { path: ".gitignore".into(), text: GITIGNORE.into(), executable: false });
    files.push(File { path: "README.md".into(), text: readme(name, lang, &render), executable: false });
    files
}

fn readme(name: &str, lang: Lang, render: &dyn Fn(&str) -> String) -> String {
    let (language, files, build, native, sdk) = match lang {
        Lang::Rust => (
            "Rust",
            "| `src/lib.rs` | the policy: `Params` (its JSON Schema is generated from it) and `decide` |\n| `Cargo.toml`, `build.sh` | the crate and its build (`wasm32-wasip2`) |",
            "./build.sh                                          # → NAME.wasm",
            "\n`cargo test` runs the policy natively on snapshot JSON (`scalegate_policy_sdk::testing`).\n",
            "`vendor/`",
        ),
        Lang::Python => (
            "Python",
            "| `app.py` | the policy: `params_schema` (checked before `decide`) and `decide` |\n| `build.sh`, `pyproject.toml` | the build (componentize-py) |\n| `wit/` | the contract |",
            "./build.sh                                          # → NAME.wasm (componentize-py)",
            "",
            "`scalegate_policy/`",
        ),
        Lang::Js => (
            "JavaScript",
            "| `policy.js` | the policy: `paramsSchema` (checked before `decide`) and `decide` |\n| `build.sh`, `package.json` | the build (componentize-js) |\n| `wit/` | the contract |",
            "npm install && ./build.sh                           # → NAME.wasm (componentize-js)",
            "",
            "`lib/scalegate-policy.js`",
        ),
    };
    let lang_upper = match lang {
        Lang::Rust => "RUST",
        Lang::Python => "PYTHON",
        Lang::Js => "JS",
    };
    render(README)
        .replace("{{language}}", language)
        .replace("{{files}}", files)
        .replace("{{build}}", &build.replace("NAME", name))
        .replace("{{native}}", native)
        .replace("{{sdk_path}}", sdk)
        .replace("{{lang_upper}}", lang_upper)
}

/// `my-policy` → `MyPolicy`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

fn write(root: &Path, file: &File) -> std::io::Result<()> {
    let path = root.join(&file.path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, &file.text)?;
    #[cfg(unix)]
    if file.executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "queue-depth", "p99-latency"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Queue", "1st", "a_b", "ends-", "a b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_language_renders_every_placeholder() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let files = project("queue-depth", lang);
            for f in &files {
                assert!(!f.text.contains("{{"), "{lang:?} {} keeps a placeholder", f.path);
            }
            assert!(files.iter().any(|f| f.path.ends_with("world.wit")), "{lang:?} carries the WIT");
            assert!(files.iter().any(|f| f.path == "cases/needs-three.yaml"));
            assert!(files.iter().any(|f| f.path == "build.sh" && f.executable));
        }
        let rust = project("queue-depth", Lang::Rust);
        let lib = rust.iter().find(|f| f.path == "src/lib.rs").unwrap();
        assert!(lib.text.contains("pub struct QueueDepth;") && lib.text.contains(r#"Info::new("queue-depth""#));
    }
}
