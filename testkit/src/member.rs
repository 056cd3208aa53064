//! What the two HAProxy drills ([`crate::drill`], [`crate::lifecycle_drill`]) share: an example
//! app that greets as its own name, behind HAProxy as server `kiln-NAME`, and a load that must
//! reach each one.

use crate::example::Example;
use crate::haproxy::Haproxy;
use crate::load::Load;
use crate::wait::wait_until;
use std::time::Duration;

/// One instance of a drill before its kiln boots.
pub struct Member {
    /// Its server's name in the HAProxy backend.
    pub server: String,
    /// The first line of its page (what [`Load::served_by`] counts).
    pub greeting: String,
    pub example: Example,
}

impl Member {
    /// The example, greeting as `name`, with an `[lb]` table that joins `haproxy` as `kiln-NAME`.
    pub fn render(name: &str, haproxy: &Haproxy, server_options: &str, drain_timeout: Duration) -> Member {
        let example = Example::render();
        let server = format!("kiln-{name}");
        let greeting = format!("hello from {name}");
        example.set_service_env("php-fpm", "GREETING", &greeting);
        let lb = haproxy.lb_table(
            example.http_addr,
            Some(&server),
            Some(server_options),
            Some(drain_timeout),
        );
        example.edit_toml(|t| {
            t.insert("lb".into(), toml::Value::Table(lb));
        });
        Member {
            server,
            greeting: format!("greeting: {greeting}"),
            example,
        }
    }
}

/// Waits until each `(server, greeting)` has answered `requests` of `load`'s requests.
pub fn warm_up<'a>(load: &Load, members: impl IntoIterator<Item = (&'a str, &'a str)>, requests: usize) {
    for (server, greeting) in members {
        wait_until(
            &format!("{server} to answer {requests} requests"),
            Duration::from_secs(30),
            || (load.served_by(greeting) >= requests).then_some(()),
        );
    }
}

/// Waits until the server greeting with `greeting` has answered `more` requests beyond those it
/// had answered so far: it goes on serving.
pub fn goes_on_serving(load: &Load, greeting: &str, more: usize) {
    let before = load.served_by(greeting);
    wait_until("the survivor to go on answering", Duration::from_secs(30), || {
        (load.served_by(greeting) >= before + more).then_some(())
    });
}
