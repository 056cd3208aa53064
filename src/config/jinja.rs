//! Templates of `[[render.file]]` (`format = "template"`): minijinja, read and compiled once when
//! the config is read, rendered at boot from the frozen environment (`env.NAME`) and the
//! instance's facts (`instance.local_ipv4`). The one room that knows the engine: `crate::render`
//! hands it values and gets text or a refusal naming what is missing.
//!
//! Undefined is strict: printing, iterating, filtering or looking into something that does not
//! exist fails the render, so a typo or a variable the instance lacks refuses the boot instead of
//! writing an empty string into a config file. Only `{% if env.X %}`, `is defined` and
//! `| default(...)` may ask after something that may be missing. kiln escapes nothing: the
//! template writes text, and what it writes is its own business. Errors name the template, the
//! line and the variable, never a value (a render error's detail may quote one: it is left out).

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The facts under `instance.`, as [`crate::metadata::InstanceFacts`] names them.
pub const INSTANCE_FACTS: [&str; 6] = [
    "provider",
    "instance_id",
    "region",
    "zone",
    "local_ipv4",
    "hostname",
];

/// The largest template read: a config snippet, not a document.
const MAX_TEMPLATE: u64 = 256 * 1024;

/// A template file, compiled, with what it names.
#[derive(Debug, Clone)]
pub struct JinjaTemplate {
    path: PathBuf,
    engine: Arc<Environment<'static>>,
    /// `env.NAME` lookups written in the template (`NAME`s); a template may also reach the whole
    /// of `env` (a loop over it), see `names_env`.
    pub env_names: BTreeSet<String>,
    /// `instance.FACT` lookups written in the template.
    pub facts: BTreeSet<String>,
    /// The template uses `env` at all: what it writes may hold a secret.
    pub names_env: bool,
}

/// What a render refused, in words that name the template, the line and the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl JinjaTemplate {
    /// Reads and compiles `path`: a syntax error, a name other than `env` and `instance`, an
    /// unknown fact or an impossible variable name is the error (every one of them).
    pub fn load(path: &Path) -> Result<JinjaTemplate, Vec<String>> {
        let source = read(path).map_err(|e| vec![e])?;
        Self::compile(path, source)
    }

    fn compile(path: &Path, source: String) -> Result<JinjaTemplate, Vec<String>> {
        let mut engine = Environment::new();
        engine.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        engine.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| vec![e.to_string()])?;
        engine.set_syntax(syntax);
        let name = path.display().to_string();
        engine
            .add_template_owned(name.clone(), source)
            .map_err(|e| vec![syntax_error(&e)])?;
        let names = engine
            .get_template(&name)
            .map_err(|e| vec![syntax_error(&e)])?
            .undeclared_variables(true);
        let mut template = JinjaTemplate {
            path: path.to_path_buf(),
            engine: Arc::new(engine),
            env_names: BTreeSet::new(),
            facts: BTreeSet::new(),
            names_env: false,
        };
        let problems = template.take_names(names);
        if problems.is_empty() {
            Ok(template)
        } else {
            Err(problems)
        }
    }

    /// Sorts the names the template reads into `env` and `instance`; anything else is a problem.
    fn take_names(&mut self, names: std::collections::HashSet<String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        for name in names {
            let (root, rest) = match name.split_once('.') {
                Some((root, rest)) => (root, Some(rest)),
                None => (name.as_str(), None),
            };
            let first = rest.map(|r| r.split('.').next().unwrap_or(r));
            match (root, first) {
                ("env", Some(var)) if crate::config::is_valid_name(var) => {
                    self.names_env = true;
                    self.env_names.insert(var.to_string());
                }
                ("env", Some(var)) => problems.push(format!(
                    "env.{var}: not a variable name (letters, digits and '_', not starting with a digit)"
                )),
                ("env", None) => self.names_env = true,
                ("instance", Some(fact)) if INSTANCE_FACTS.contains(&fact) => {
                    self.facts.insert(fact.to_string());
                }
                ("instance", Some(fact)) => problems.push(format!(
                    "instance.{fact}: no such fact; known: {}",
                    INSTANCE_FACTS.map(|f| format!("instance.{f}")).join(", ")
                )),
                ("instance", None) => {}
                (other, _) => problems.push(format!(
                    "{other}: unknown variable; a template reads env.NAME (the environment) and instance.FACT"
                )),
            }
        }
        problems
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text, from the environment's values and the facts kiln knows (a fact it does not know
    /// is absent). A missing variable is named; any other failure gives its kind and line only.
    pub fn render(
        &self,
        env: &BTreeMap<String, String>,
        facts: &BTreeMap<&'static str, String>,
    ) -> Result<String, RenderError> {
        let name = self.path.display().to_string();
        let template = self
            .engine
            .get_template(&name)
            .map_err(|e| RenderError(syntax_error(&e)))?;
        let context = Value::from(BTreeMap::from([
            ("env", Value::from(env.clone())),
            ("instance", Value::from(facts.clone())),
        ]));
        template.render(context).map_err(|e| {
            let line = e.line().map(|l| format!("line {l}: ")).unwrap_or_default();
            if e.kind() != ErrorKind::UndefinedError {
                return RenderError(format!("{line}{}", e.kind()));
            }
            let missing = self.missing(env, facts);
            match missing.is_empty() {
                true => RenderError(format!("{line}undefined value")),
                false => RenderError(format!("{line}undefined value: {}", missing.join(", "))),
            }
        })
    }

    /// The variables the template names that the instance does not have, as it names them.
    fn missing(&self, env: &BTreeMap<String, String>, facts: &BTreeMap<&'static str, String>) -> Vec<String> {
        let vars = self
            .env_names
            .iter()
            .filter(|n| !env.contains_key(*n))
            .map(|n| format!("env.{n} is not in the environment"));
        let facts = self
            .facts
            .iter()
            .filter(|f| !facts.contains_key(f.as_str()))
            .map(|f| format!("instance.{f} is not known on this instance"));
        vars.chain(facts).collect()
    }
}

/// A syntax error as `line N: message` (a message about the template's text, never a value).
fn syntax_error(e: &minijinja::Error) -> String {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    match e.line() {
        Some(line) => format!("line {line}: {}{detail}", e.kind()),
        None => format!("{}{detail}", e.kind()),
    }
}

fn read(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let len = file.metadata().map_err(|e| format!("cannot read it: {e}"))?.len();
    if len > MAX_TEMPLATE {
        return Err(format!(
            "{len} bytes, over the {MAX_TEMPLATE} bytes a template may have"
        ));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_TEMPLATE), &mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(source: &str) -> Result<JinjaTemplate, Vec<String>> {
        JinjaTemplate::compile(Path::new("/t.conf.j2"), source.to_string())
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn facts() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("instance_id", "i-0abc".to_string()),
            ("provider", "ec2".to_string()),
        ])
    }

    #[test]
    fn names_env_variables_and_facts_and_renders_them_keeping_the_last_newline() {
        let t =
            compile("a {{ env.APP_HOST }}:{{ instance.instance_id }} {{ env.X | default('d') }}\n").unwrap();
        assert_eq!(
            t.env_names,
            BTreeSet::from(["APP_HOST".to_string(), "X".to_string()])
        );
        assert_eq!(t.facts, BTreeSet::from(["instance_id".to_string()]));
        assert!(t.names_env);
        let out = t.render(&env(&[("APP_HOST", "db")]), &facts()).unwrap();
        assert_eq!(out, "a db:i-0abc d\n");
        let plain = compile("listen {{ instance.instance_id }};").unwrap();
        assert!(!plain.names_env);
    }

    #[test]
    fn a_missing_variable_or_fact_refuses_naming_it_and_its_line() {
        let t = compile("ok\n{{ env.DB_HOST }} {{ instance.region }}\n").unwrap();
        let err = t.render(&env(&[]), &facts()).unwrap_err();
        assert_eq!(
            err.0,
            "line 2: undefined value: env.DB_HOST is not in the environment, instance.region is not known on this instance"
        );
        // Asked after, not printed: allowed.
        let optional =
            compile("{% if env.OPT %}{{ env.OPT }}{% endif %}{% if env.O2 is defined %}x{% endif %}")
                .unwrap();
        assert_eq!(optional.render(&env(&[]), &facts()).unwrap(), "");
    }

    #[test]
    fn unknown_names_facts_and_syntax_errors_are_refused_at_once() {
        assert_eq!(
            compile("{{ envv.X }} {{ instance.ip }}").unwrap_err(),
            [
                "envv: unknown variable; a template reads env.NAME (the environment) and instance.FACT",
                "instance.ip: no such fact; known: instance.provider, instance.instance_id, instance.region, instance.zone, instance.local_ipv4, instance.hostname",
            ]
        );
        let err = compile("a\n{% if %}").unwrap_err();
        assert!(err[0].starts_with("line 2: syntax error"), "{err:?}");
    }

    #[test]
    fn a_render_error_never_quotes_a_value() {
        let t = compile("{{ env.N | int + 1 }}").unwrap();
        let err = t.render(&env(&[("N", "SECRET-abc")]), &facts());
        if let Err(e) = err {
            assert!(!e.0.contains("SECRET"), "{e:?}");
        }
        let t = compile("{{ env.S + 1 }}").unwrap();
        let e = t.render(&env(&[("S", "SECRET-abc")]), &facts()).unwrap_err();
        assert!(!e.0.contains("SECRET") && e.0.starts_with("line 1: "), "{e:?}");
    }
}
