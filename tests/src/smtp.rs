//! An SMTP sink on a free loopback port: a small aiosmtpd (Debian `python3-aiosmtpd`) handler
//! that appends one JSON line per received message — arrival time, envelope recipients,
//! subject and the decoded text of every `text/*` part — so benchmarks can time mail delivery
//! and match messages to what caused them.

use crate::process::Proc;
use crate::{bins, ports, wait};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// The handler. The arrival time is taken in `handle_DATA`, i.e. once the whole message has
/// been received and before it is answered; each record is one `write` of a full line, so a
/// reader never sees half a record except a line still without its newline.
const SINK_PY: &str = r#"
import email, email.policy, json, sys, threading, time
from aiosmtpd.controller import Controller

class Sink:
    def __init__(self, path):
        self.out = open(path, "a", buffering=1)

    async def handle_DATA(self, server, session, envelope):
        arrived = time.time()
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        texts = []
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                try:
                    texts.append(part.get_content())
                except Exception as e:
                    texts.append("<undecodable part: %s>" % e)
        rec = {"arrived_ms": arrived * 1000.0, "to": list(envelope.rcpt_tos),
               "subject": str(msg["subject"] or ""), "text": "\n".join(texts)}
        self.out.write(json.dumps(rec) + "\n")
        return "250 OK"

port, path = int(sys.argv[1]), sys.argv[2]
controller = Controller(Sink(path), hostname="127.0.0.1", port=port)
controller.start()
threading.Event().wait()
"#;

/// One received message.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    /// Wall-clock arrival, milliseconds since the Unix epoch (fractional).
    pub arrived_ms: f64,
    pub to: Vec<String>,
    pub subject: String,
    /// Decoded text of all `text/*` parts (plain and HTML), joined by newlines.
    pub text: String,
}

pub struct SmtpSink {
    root: TempDir,
    pub port: u16,
    proc: Proc,
}

impl SmtpSink {
    /// Starts the sink and waits until it accepts connections.
    pub fn start() -> SmtpSink {
        // The script needs the system Python that the Debian package installs into.
        bins::peer("/usr/bin/aiosmtpd", "python3-aiosmtpd");
        let python = bins::peer("/usr/bin/python3", "python3-aiosmtpd");
        let root = tempfile::Builder::new().prefix("tz-smtp-").tempdir().expect("tempdir");
        let script = root.path().join("sink.py");
        std::fs::write(&script, SINK_PY).expect("write sink.py");
        let port = ports::free_port();
        let mut cmd = Command::new(python);
        cmd.current_dir(root.path()).arg(&script).arg(port.to_string()).arg(root.path().join("mail.jsonl"));
        let mut proc = Proc::spawn("smtp-sink", cmd, &root.path().join("logs"));
        wait::until("SMTP sink listening", Duration::from_secs(30), Duration::from_millis(50), |last| {
            proc.assert_running();
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => Some(()),
                Err(e) => {
                    *last = e.to_string();
                    None
                }
            }
        });
        SmtpSink { root, port, proc }
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("mail.jsonl")
    }

    /// Every message received so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // A line without its newline is still being written; it is read next time.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("SMTP sink wrote a bad record ({e}): {l}")))
            .collect()
    }

    /// The sink's own output, for failure messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }
}
