//! `{placeholder}` templates, and the one scanner that reads them.
//!
//! `[lb]` names and addresses name facts of the instance (`{instance_id}:8080`): they are parsed
//! into a [`Template`] when the config is read, so a typo is a `kiln check` error, and filled at
//! boot from the instance's metadata, when the facts are known. Endpoint URLs of other sections
//! hold placeholders their own rooms fill (`{region}`, `{vault}`): [`fill_any`] stands a word in
//! for each so the URL around them can be checked. Both read the text through [`pieces`].

/// A fact of the instance that a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    InstanceId,
    LocalIpv4,
    Region,
    Hostname,
}

impl Fact {
    pub const ALL: [Fact; 4] = [Fact::InstanceId, Fact::LocalIpv4, Fact::Region, Fact::Hostname];

    /// The placeholder's name, without braces: `instance_id`.
    pub fn name(self) -> &'static str {
        match self {
            Fact::InstanceId => "instance_id",
            Fact::LocalIpv4 => "local_ipv4",
            Fact::Region => "region",
            Fact::Hostname => "hostname",
        }
    }

    fn named(name: &str) -> Option<Fact> {
        Fact::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A piece of template text, as [`pieces`] splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// Text as it is (it may hold a `}` that no `{` opened).
    Text(&'a str),
    /// `{name}`: what stands between a `{` and the next `}` (which may hold a `{`).
    Placeholder(&'a str),
    /// A `{` that no `}` closes, and everything after it.
    Unclosed(&'a str),
}

/// The one reading of `{placeholders}`: text, then a placeholder from a `{` to the next `}`,
/// and so on; a `{` that nothing closes ends the text.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('{') {
        out.push(Piece::Text(before));
        match after.split_once('}') {
            Some((name, tail)) => {
                out.push(Piece::Placeholder(name));
                rest = tail;
            }
            None => {
                out.push(Piece::Unclosed(after));
                return out;
            }
        }
    }
    out.push(Piece::Text(rest));
    out
}

/// Text with `{placeholders}` naming instance facts (`{local_ipv4}:8080`), parsed once: only
/// known facts, and braces that close. [`Template::render`] fills it once the facts are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As written, for messages.
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Fact(Fact),
}

impl Template {
    /// The template `text` is, or why it is not one: a `}` without its `{`, a `{` not closed,
    /// or a placeholder that names no fact.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        for piece in pieces(text) {
            match piece {
                Piece::Text(t) if t.contains('}') => return Err("a '}' has no '{'".into()),
                Piece::Text("") => {}
                Piece::Text(t) => parts.push(Part::Text(t.to_string())),
                Piece::Unclosed(_) => return Err("a '{' is not closed".into()),
                Piece::Placeholder(name) => {
                    let fact = Fact::named(name).ok_or_else(|| {
                        let known: Vec<String> =
                            Fact::ALL.iter().map(|f| format!("{{{}}}", f.name())).collect();
                        format!("unknown placeholder {{{name}}}; known: {}", known.join(", "))
                    })?;
                    parts.push(Part::Fact(fact));
                }
            }
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template that is one fact alone: `{instance_id}`.
    pub fn fact(fact: Fact) -> Template {
        Template {
            text: format!("{{{}}}", fact.name()),
            parts: vec![Part::Fact(fact)],
        }
    }

    /// As written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text with each placeholder replaced by `value(fact)`; the first fact it has no value
    /// for is the error.
    pub fn render<'v>(&self, value: impl Fn(Fact) -> Option<&'v str>) -> Result<String, Fact> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Fact(fact) => out.push_str(value(*fact).ok_or(*fact)?),
            }
        }
        Ok(out)
    }
}

/// `text` with every `{name}`, whatever the name, replaced by `with`; a `{` that nothing closes
/// and a lone `}` stay as they are. For checking what surrounds placeholders that other rooms
/// fill (`https://{vault}.vault.azure.net`).
pub(super) fn fill_any(text: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(_) => out.push_str(with),
            Piece::Unclosed(rest) => {
                out.push('{');
                out.push_str(rest);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(fact: Fact) -> Option<&'static str> {
        match fact {
            Fact::InstanceId => Some("i-0abc"),
            Fact::LocalIpv4 => Some("10.0.0.5"),
            Fact::Region | Fact::Hostname => None,
        }
    }

    #[test]
    fn a_template_is_parsed_once_and_filled_from_the_facts() {
        let t = Template::parse("web-{instance_id}@{local_ipv4}:8080").unwrap();
        assert_eq!(t.as_str(), "web-{instance_id}@{local_ipv4}:8080");
        assert_eq!(t.render(facts).unwrap(), "web-i-0abc@10.0.0.5:8080");
        assert_eq!(
            Template::parse("{hostname}").unwrap().render(facts),
            Err(Fact::Hostname)
        );
        assert_eq!(Template::fact(Fact::LocalIpv4).as_str(), "{local_ipv4}");
        assert_eq!(Template::parse("plain").unwrap().render(facts).unwrap(), "plain");
    }

    #[test]
    fn braces_that_do_not_pair_and_unknown_names_are_refused() {
        let err = |t: &str| Template::parse(t).unwrap_err();
        assert_eq!(err("a}b{instance_id}"), "a '}' has no '{'");
        assert_eq!(err("{instance_id}}"), "a '}' has no '{'");
        assert_eq!(err("{instance_id"), "a '{' is not closed");
        assert_eq!(
            err("{ip}:80"),
            "unknown placeholder {ip}; known: {instance_id}, {local_ipv4}, {region}, {hostname}"
        );
        assert!(err("{{instance_id}}").starts_with("unknown placeholder {{instance_id}"));
    }

    #[test]
    fn fill_any_fills_every_closed_placeholder_and_keeps_the_rest() {
        assert_eq!(fill_any("https://{vault}.x/{region}", "x"), "https://x.x/x");
        assert_eq!(fill_any("a{b{c", "x"), "a{b{c");
        assert_eq!(fill_any("a}{b}", "x"), "a}x");
        assert_eq!(fill_any("{{b}c", "x"), "xc");
    }
}
