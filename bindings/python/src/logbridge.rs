//! `tracing` events of the Rust core to Python's `logging`.
//!
//! A subscriber of the module's own formats each enabled event and hands it to a thread that
//! logs it with the GIL (through [`with_python`], so never while the interpreter exits) on the
//! logger `qtalk_rs.<target>` (`qtalk_rs.qtalk_mux.session`, ...). An event is enabled when the
//! `qtalk_rs` logger's effective level lets its level through; that level is read when the
//! module is imported and whenever a peer or server starts. At most 1024 records wait for the
//! thread; past that, records are dropped (and counted in the next one logged).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::bridge::with_python;

/// Records that may wait for the logging thread.
const QUEUE: usize = 1024;

/// The `qtalk_rs` logger's effective level (Python's numbers); 30 (WARNING) until read.
static EFFECTIVE: AtomicU32 = AtomicU32::new(30);
static DROPPED: AtomicU64 = AtomicU64::new(0);

struct LogRecord {
    level: u32,
    target: String,
    message: String,
}

fn python_level(l: &Level) -> u32 {
    match *l {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

fn sender() -> &'static SyncSender<LogRecord> {
    static TX: OnceLock<SyncSender<LogRecord>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("qtalk-rs-log".into())
            .spawn(move || log_thread(rx))
            .expect("cannot start the logging thread");
        tx
    })
}

fn log_thread(rx: Receiver<LogRecord>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let entered = with_python(|py| {
            let Ok(logging) = py.import("logging") else {
                return;
            };
            for r in batch {
                let name = format!("qtalk_rs.{}", r.target.replace("::", "."));
                let mut msg = r.message;
                let dropped = DROPPED.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let _ = write!(msg, " ({dropped} earlier records dropped)");
                }
                if let Ok(logger) = logging.call_method1("getLogger", (name,)) {
                    let _ = logger.call_method1("log", (r.level, msg));
                }
            }
        });
        if entered.is_none() {
            return;
        }
    }
}

/// Reads the `qtalk_rs` logger's effective level (with the GIL).
pub(crate) fn refresh_level(py: Python<'_>) {
    let level = py
        .import("logging")
        .and_then(|l| l.call_method1("getLogger", ("qtalk_rs",)))
        .and_then(|l| l.call_method0("getEffectiveLevel"))
        .and_then(|l| l.extract::<u32>());
    if let Ok(level) = level {
        EFFECTIVE.store(level, Ordering::Relaxed);
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(
                self.0,
                "{}{value:?}",
                if self.0.is_empty() { "" } else { " " }
            );
        } else {
            let _ = write!(
                self.0,
                "{}{}={value:?}",
                if self.0.is_empty() { "" } else { " " },
                field.name()
            );
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            let _ = write!(
                self.0,
                "{}{}={value}",
                if self.0.is_empty() { "" } else { " " },
                field.name()
            );
        }
    }
}

/// Forwards events to `logging`; spans are not kept.
struct ToLogging;

impl Subscriber for ToLogging {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change: ask `enabled` every time (one atomic load).
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        python_level(metadata.level()) >= EFFECTIVE.load(Ordering::Relaxed)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        let record = LogRecord {
            level: python_level(meta.level()),
            target: meta.target().to_string(),
            message: message.0,
        };
        if let Err(TrySendError::Full(_)) = sender().try_send(record) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the bridge as the process's `tracing` subscriber, unless one is set already.
pub(crate) fn install(py: Python<'_>) {
    refresh_level(py);
    let _ = tracing::subscriber::set_global_default(ToLogging);
}
