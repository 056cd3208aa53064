//! AWS error answers, whatever their shape: JSON 1.1 (`{"__type": "...#Code", "message"}`), Query
//! XML (`<ErrorResponse><Error><Code>`), and the XML some servers give even to JSON services
//! (moto's signature errors: `<ErrorResponse><Errors><Error><Code>`).

use quick_xml::events::Event;
use std::fmt;

/// Codes that mean "slow down": retried inside the deadline like a 5xx.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// An error answer from AWS: its code and message, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn is_throttling(&self) -> bool {
        THROTTLING.contains(&self.code.as_str())
    }
}

/// A call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// AWS answered with an error code.
    Aws {
        service: &'static str,
        action: String,
        endpoint: String,
        status: u16,
        error: AwsError,
        /// More than 1 when it was retried until the deadline.
        attempts: u32,
    },
    /// No usable answer: connection, timeout, credentials, signing, an answer kiln cannot read.
    Failed {
        service: &'static str,
        action: String,
        endpoint: String,
        reason: String,
        transient: bool,
    },
}

impl CallError {
    /// AWS's error code, when AWS answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Aws { error, .. } => Some(&error.code),
            CallError::Failed { .. } => None,
        }
    }

    /// Worth another attempt: what `net` retries everywhere (429, 5xx, no answer) and AWS's
    /// throttling codes.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Aws { status, error, .. } => {
                reqwest::StatusCode::from_u16(*status).is_ok_and(crate::net::transient_status)
                    || error.is_throttling()
            }
            CallError::Failed { transient, .. } => *transient,
        }
    }

    pub(super) fn not_transient(self) -> CallError {
        self.transient_if(false)
    }

    pub(super) fn transient_if(mut self, yes: bool) -> CallError {
        if let CallError::Failed { transient, .. } = &mut self {
            *transient = yes;
        }
        self
    }

    /// The last error of a call retried until its deadline.
    pub(super) fn gave_up(mut self, after: u32) -> CallError {
        match &mut self {
            CallError::Aws { attempts, .. } => *attempts = after,
            CallError::Failed { reason, .. } => {
                *reason = format!(
                    "{reason} (gave up at the deadline after {})",
                    crate::net::retry::attempts(after)
                )
            }
        }
        self
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Aws {
                service,
                action,
                status,
                error,
                attempts,
                ..
            } => {
                write!(
                    f,
                    "{service} {action}: {} (HTTP {status}): {}",
                    error.code, error.message
                )?;
                if *attempts > 1 {
                    let attempts = crate::net::retry::attempts(*attempts);
                    write!(f, " (gave up at the deadline after {attempts})")?;
                }
                Ok(())
            }
            CallError::Failed {
                service,
                action,
                endpoint,
                reason,
                ..
            } => write!(f, "{service} {action} at {endpoint}: {reason}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The code and message of an error answer; None when the body is neither shape.
pub fn parse(body: &[u8]) -> Option<AwsError> {
    let text = std::str::from_utf8(body).ok()?.trim_start();
    let (code, message) = if text.starts_with('{') {
        from_json(text)?
    } else if text.starts_with('<') {
        from_xml(text)?
    } else {
        return None;
    };
    // Both come from whoever answered (an endpoint override can point anywhere): one line,
    // printable, bounded, before they reach a log or a terminal.
    Some(AwsError {
        code: tidy(&code),
        message: tidy(&message),
    })
}

/// `__type` may be `com.amazon.coral.service#AccessDeniedException` or carry a `:` suffix.
fn from_json(text: &str) -> Option<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    let raw = doc.get("__type").or_else(|| doc.get("code"))?.as_str()?;
    let code = raw.rsplit('#').next()?.split(':').next()?.to_string();
    let message = ["message", "Message", "errorMessage"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(|m| m.as_str()))
        .unwrap_or_default()
        .to_string();
    (!code.is_empty()).then_some((code, message))
}

/// The first `<Code>` and `<Message>` anywhere in the document (every AWS XML error shape).
fn from_xml(text: &str) -> Option<(String, String)> {
    let mut reader = quick_xml::Reader::from_str(text);
    let (mut code, mut message) = (None, None);
    // The element being read and its text so far (entities arrive as events of their own).
    let mut inside: Option<(bool, String)> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                inside = match e.local_name().as_ref() {
                    b"Code" if code.is_none() => Some((true, String::new())),
                    b"Message" if message.is_none() => Some((false, String::new())),
                    _ => None,
                }
            }
            Event::Text(t) => {
                if let Some((_, text)) = inside.as_mut() {
                    text.push_str(&t.decode().ok()?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, text)) = inside.as_mut() {
                    let name = r.decode().ok()?;
                    let c = match &*name {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => r.resolve_char_ref().ok().flatten(),
                    };
                    text.extend(c);
                }
            }
            Event::End(_) => match inside.take() {
                Some((true, text)) => code = Some(text.trim().to_string()),
                Some((false, text)) => message = Some(text.trim().to_string()),
                None => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    Some((code.filter(|c| !c.is_empty())?, message.unwrap_or_default()))
}

/// One line (whitespace runs as one space), kept as every peer's text is
/// ([`crate::terminal::peer_text`]: bounded, control characters escaped).
fn tidy(message: &str) -> String {
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::terminal::peer_text(&one_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_xml_errors() {
        let xml = r#"<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
          <Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>
          <Message>The request signature we calculated does not match &amp; so on</Message></Error>
          <RequestId>x</RequestId></ErrorResponse>"#;
        let e = parse(xml.as_bytes()).unwrap();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert_eq!(
            e.message,
            "The request signature we calculated does not match & so on"
        );
    }

    #[test]
    fn nested_errors_as_moto_gives_json_services() {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/kiln is not authorized</Message><Type>Sender</Type></Error></Errors></ErrorResponse>";
        let e = parse(xml.as_bytes()).unwrap();
        assert_eq!(e.code, "AccessDenied");
        assert!(e.message.starts_with("User: arn:aws:iam"));
    }

    #[test]
    fn json_errors() {
        let e = parse(br#"{"__type":"com.amazonaws.ssm#ParameterNotFound","message":"not found"}"#).unwrap();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ParameterNotFound", "not found")
        );
        let e = parse(br#"{"__type":"ThrottlingException","Message":"Rate exceeded"}"#).unwrap();
        assert!(e.is_throttling());
        assert_eq!(parse(b"<html>oops</html>"), None);
        assert_eq!(parse(b"Internal Server Error"), None);
    }
}
