//! What travels with a call besides its selector and arguments: [`Metadata`] and a deadline,
//! together a [`CallContext`].
//!
//! On the wire they are optional fields of the call header, `Meta` and `Deadline` (PROTOCOL.md,
//! section 3.12): absent, the header is byte for byte the reference's.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Per-call metadata: text keys to text values, like gRPC's (and HTTP's) headers. Keys are
/// compared exactly; by convention they are lowercase (`authorization`, `x-request-id`).
///
/// ```
/// use qtalk::rpc::Metadata;
/// let mut meta = Metadata::new();
/// meta.insert("authorization", "Bearer s3cr3t");
/// assert_eq!(meta.get("authorization"), Some("Bearer s3cr3t"));
/// assert_eq!(meta.size(), "authorization".len() + "Bearer s3cr3t".len() + 32);
/// ```
#[derive(Clone, Default)]
pub struct Metadata {
    /// Every key and its value, back to back: one buffer, so that decoding a call's metadata
    /// costs two allocations whatever the number of entries (it showed when a token came with
    /// every call).
    text: String,
    /// One per entry, sorted by key, keys unique.
    entries: Vec<Span>,
}

/// Where an entry lies in [`Metadata::text`]: its key is `text[key..value]`, its value
/// `text[value..end]`.
#[derive(Clone, Copy, Debug)]
struct Span {
    key: usize,
    value: usize,
    end: usize,
}

/// What [`Metadata::size`] counts per entry besides its key and value (as HTTP/2 counts a
/// header list).
const ENTRY_OVERHEAD: usize = 32;

impl Metadata {
    /// No entries.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    fn key_of(&self, s: &Span) -> &str {
        &self.text[s.key..s.value]
    }

    fn value_of(&self, s: &Span) -> &str {
        &self.text[s.value..s.end]
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|s| self.key_of(s).cmp(key))
    }

    /// Appends `key` and `value` to the text, as an entry not yet in the list.
    fn push_text(&mut self, key: &str, value: &str) -> Span {
        let start = self.text.len();
        self.text.push_str(key);
        self.text.push_str(value);
        Span {
            key: start,
            value: start + key.len(),
            end: self.text.len(),
        }
    }

    /// Rewrites the text without the bytes no entry refers to any more.
    fn compact(&mut self) {
        let mut text = String::with_capacity(self.entries.iter().map(|s| s.end - s.key).sum());
        for s in &mut self.entries {
            let start = text.len();
            text.push_str(&self.text[s.key..s.end]);
            *s = Span {
                key: start,
                value: start + (s.value - s.key),
                end: text.len(),
            };
        }
        self.text = text;
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let key = key.into();
        let value = value.into();
        match self.find(&key) {
            Ok(i) => {
                let old = self.value_of(&self.entries[i]).to_string();
                self.entries[i] = self.push_text(&key, &value);
                self.compact();
                Some(old)
            }
            Err(i) => {
                let span = self.push_text(&key, &value);
                self.entries.insert(i, span);
                None
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| self.value_of(&self.entries[i]))
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.find(key).ok()?;
        let old = self.value_of(&self.entries[i]).to_string();
        self.entries.remove(i);
        self.compact();
        Some(old)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|s| (self.key_of(s), self.value_of(s)))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The size that limits count ([`Options::max_metadata`](crate::rpc::Options::max_metadata)):
    /// the bytes of every key and value, plus 32 per entry.
    pub fn size(&self) -> usize {
        self.entries
            .iter()
            .map(|s| s.end - s.key + ENTRY_OVERHEAD)
            .sum()
    }

    /// Sorts freshly appended entries; of repeated keys the last wins (as JSON decoders do).
    fn sort_appended(&mut self) {
        if self.entries.len() < 2 {
            return;
        }
        // Stable: equal keys keep their order, so the last is the one kept.
        let text = &self.text;
        self.entries
            .sort_by(|a, b| text[a.key..a.value].cmp(&text[b.key..b.value]));
        let before = self.entries.len();
        let mut kept: Vec<Span> = Vec::with_capacity(before);
        for s in self.entries.drain(..) {
            match kept.last_mut() {
                Some(last) if text[last.key..last.value] == text[s.key..s.value] => *last = s,
                _ => kept.push(s),
            }
        }
        self.entries = kept;
        if self.entries.len() != before {
            self.compact();
        }
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Metadata) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Metadata {}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Decodes a text into the end of a buffer (borrowed from the frame when the codec can, so
/// that no string of its own is allocated).
struct AppendText<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for AppendText<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for AppendText<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("text")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v);
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Metadata;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of text to text")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Metadata, A::Error> {
                // The frame's size bounds how much there can be; no more is reserved.
                let hint = map.size_hint();
                let n = hint.unwrap_or(0).min(16);
                let mut meta = Metadata {
                    text: String::with_capacity(if hint == Some(0) { 0 } else { 64 }),
                    entries: Vec::with_capacity(n),
                };
                loop {
                    let start = meta.text.len();
                    if map.next_key_seed(AppendText(&mut meta.text))?.is_none() {
                        break;
                    }
                    let value = meta.text.len();
                    map.next_value_seed(AppendText(&mut meta.text))?;
                    meta.entries.push(Span {
                        key: start,
                        value,
                        end: meta.text.len(),
                    });
                }
                meta.sort_appended();
                Ok(meta)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Metadata, E> {
                Ok(Metadata::new())
            }
        }
        // `any`, so that a `null` (a nil map) is no metadata.
        d.deserialize_any(Entries)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut meta = Metadata::new();
        for (k, v) in iter {
            let span = meta.push_text(&k.into(), &v.into());
            meta.entries.push(span);
        }
        meta.sort_appended();
        meta
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

/// The metadata and the deadline of a call: what a caller sends with it
/// ([`Caller::call_with`](crate::rpc::Caller::call_with)), and what a responder received
/// ([`Call::context`](crate::rpc::Call::context)).
///
/// The deadline is a point in time on this side; on the wire it travels as the time left
/// (gRPC's `grpc-timeout`), so clock skew between the peers does not matter. A call made
/// while handling another inherits its deadline, and chosen metadata, in one line:
///
/// ```
/// # async fn handle(call: qtalk::rpc::Call, backend: qtalk::rpc::Caller) -> Result<(), qtalk::rpc::Error> {
/// let ctx = call.context().forward(&["x-request-id"]);
/// let reply: String = backend.call_with(&ctx, "Lookup", &["key"]).await?;
/// # let _ = reply; Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    metadata: Metadata,
    deadline: Option<Instant>,
}

impl CallContext {
    /// No metadata, no deadline.
    pub fn new() -> CallContext {
        CallContext::default()
    }

    /// This context with `key` set to `value` in its metadata.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// This context with its deadline at most `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(at) => self.with_deadline(at),
            None => self,
        }
    }

    /// This context with its deadline at `at`, or earlier if it had an earlier one.
    pub fn with_deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
        self
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The metadata, to change.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// When the caller stops waiting for the answer, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time left until the deadline (zero once it passed), if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True once the deadline passed.
    pub fn is_expired(&self) -> bool {
        passed(self.deadline)
    }

    /// A context for a call made on behalf of this one: the same deadline, and the metadata
    /// entries named in `keys` (metadata is not forwarded wholesale: a token meant for one
    /// service should not reach the next).
    pub fn forward(&self, keys: &[&str]) -> CallContext {
        CallContext {
            metadata: keys
                .iter()
                .filter_map(|k| self.metadata.get(k).map(|v| (*k, v)))
                .collect(),
            deadline: self.deadline,
        }
    }

    /// The deadline as the header's `Deadline`: whole milliseconds left, rounded up (so that
    /// a call with time left never arrives as already expired).
    pub(crate) fn wire_deadline(&self) -> Option<u64> {
        Some(ms_rounded_up(self.remaining()?))
    }

    /// The context a responder reconstructs from a header received now. A `Deadline` too far
    /// ahead to represent is no deadline.
    pub(crate) fn from_wire(metadata: Metadata, deadline_ms: Option<u64>) -> CallContext {
        let deadline =
            deadline_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        CallContext { metadata, deadline }
    }
}

/// True when there is a deadline and it passed.
pub(crate) fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| d <= Instant::now())
}

/// What a server answers for a handler that ended without answering: `null` (no error) in
/// time, [`DEADLINE_EXCEEDED`](crate::rpc::DEADLINE_EXCEEDED) once the call's deadline passed
/// (a handler that gave up at the deadline did not return nothing).
pub(crate) fn unanswered_error(deadline: Option<Instant>) -> Option<String> {
    passed(deadline).then(|| crate::rpc::DEADLINE_EXCEEDED.to_string())
}

/// Whole milliseconds, rounded up.
fn ms_rounded_up(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_on_the_wire() {
        let ctx = CallContext::new().with_timeout(Duration::from_millis(1500));
        assert_eq!(ctx.wire_deadline(), Some(1500));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(ctx.wire_deadline(), Some(1300));
        // Part of a millisecond left is rounded up.
        assert_eq!(ms_rounded_up(Duration::from_micros(1_299_800)), 1300);
        assert_eq!(ms_rounded_up(Duration::from_nanos(1)), 1);
        assert_eq!(ms_rounded_up(Duration::ZERO), 0);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(ctx.is_expired());
        assert_eq!(ctx.wire_deadline(), Some(0));
        assert_eq!(CallContext::new().wire_deadline(), None);
        // An earlier deadline wins; a later one does not move it.
        let early = CallContext::new()
            .with_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(5));
        assert_eq!(early.wire_deadline(), Some(1000));
        // Hostile values do not panic.
        let far = CallContext::from_wire(Metadata::new(), Some(u64::MAX));
        assert!(!far.is_expired());
    }

    #[test]
    fn metadata_sorted_last_wins() {
        let m: Metadata = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("a", "2"), ("b", "3")]);
        let json: Metadata = serde_json::from_str(r#"{"z":"1","a":"2","z":"9"}"#).unwrap();
        assert_eq!(json.get("z"), Some("9"));
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"a":"2","z":"9"}"#
        );
        let null: Metadata = serde_json::from_str("null").unwrap();
        assert!(null.is_empty());
        assert!(serde_json::from_str::<Metadata>(r#"{"a":1}"#).is_err());
    }

    #[test]
    fn metadata_edits() {
        let mut m = Metadata::new();
        assert_eq!(m.insert("k", "v1"), None);
        assert_eq!(m.insert("a", "x"), None);
        assert_eq!(m.insert("k", "v2"), Some("v1".to_string()));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("a", "x"), ("k", "v2")]);
        // Replaced values do not stay in the buffer.
        assert_eq!(m.text.len(), "ax".len() + "kv2".len());
        assert_eq!(m.size(), 2 + 3 + 2 * ENTRY_OVERHEAD);
        assert_eq!(m.remove("a"), Some("x".to_string()));
        assert_eq!(m.remove("a"), None);
        assert_eq!(m.get("k"), Some("v2"));
        assert_eq!(m.text, "kv2");
        assert_eq!(format!("{m:?}"), r#"{"k": "v2"}"#);
        let cbor = crate::codec::Cbor;
        let mut buf = bytes::BytesMut::new();
        crate::codec::encode(&cbor, &m, &mut buf).unwrap();
        let back: Metadata = crate::codec::decode(&cbor, &buf).unwrap();
        assert_eq!(back, m);
        // Keys that are prefixes of each other, and empty ones, stay apart.
        let m: Metadata = [("ab", ""), ("a", "b"), ("", "z")].into_iter().collect();
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![("", "z"), ("a", "b"), ("ab", "")]
        );
    }

    #[test]
    fn forward() {
        let ctx = CallContext::new()
            .with_metadata("authorization", "t")
            .with_metadata("x-request-id", "r1");
        let fwd = ctx.forward(&["x-request-id", "absent"]);
        assert_eq!(fwd.metadata().len(), 1);
        assert_eq!(fwd.metadata().get("x-request-id"), Some("r1"));
    }
}
