//! Callbacks passed as values: the reference's function pointers (`exp.Ptr`).
//!
//! A callback travels as `{"$fnptr": "<id>"}`. The side that sends it registers a handler under
//! the selector `<id>`; the side that receives it calls that selector back on the same session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::rpc::{Caller, Error, Handler, MuxError, RespondMux};

/// A reference to a handler on the peer that sent it, encoded as `{"$fnptr": "<id>"}`.
///
/// ```
/// use qtalk::rpc::{func, Call, Callback, RespondMux};
/// let mux = RespondMux::new();
/// let cb = Callback::register(&mux, func(|_c: Call, (n,): (i64,)| async move {
///     Ok::<_, String>(n + 1)
/// })).unwrap();
/// assert!(mux.lookup(&cb.id).is_some());
/// let json = serde_json::to_string(&cb).unwrap();
/// assert_eq!(json, format!(r#"{{"$fnptr":"{}"}}"#, cb.id));
/// cb.unregister(&mux);
/// assert!(mux.lookup(&cb.id).is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Callback {
    /// The selector the handler is registered under.
    #[serde(rename = "$fnptr")]
    pub id: String,
}

impl Callback {
    /// A callback with a fresh unique id (20 characters, like the reference's ids), not yet
    /// registered.
    pub fn new() -> Callback {
        Callback { id: fresh_id() }
    }

    /// Registers `handler` on `mux` under a fresh id and returns the callback to send.
    pub fn register(mux: &RespondMux, handler: impl Handler) -> Result<Callback, MuxError> {
        let cb = Callback::new();
        mux.handle(&cb.id, handler)?;
        Ok(cb)
    }

    /// Removes the callback's handler from `mux`; false when it was not registered.
    pub fn unregister(&self, mux: &RespondMux) -> bool {
        mux.remove(&self.id).is_some()
    }

    /// Calls the callback on the peer that sent it, through `caller` (normally
    /// [`Call::caller`](crate::rpc::Call::caller) of the call that carried it).
    pub async fn call<A, R>(&self, caller: &Caller, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        caller.call(&self.id, args).await
    }
}

impl Default for Callback {
    fn default() -> Self {
        Callback::new()
    }
}

/// A process-unique id: time, process and a counter, in 20 lowercase base-32 digits.
fn fresh_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (u128::from(nanos) << 64)
        | (u128::from(std::process::id()) << 32)
        | u128::from(count & 0xffff_ffff);
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    (0..20)
        .map(|i| DIGITS[((mixed >> (i * 5)) & 31) as usize] as char)
        .collect()
}
