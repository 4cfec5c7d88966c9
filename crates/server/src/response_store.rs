//! Stored Responses-API responses, in memory only: `GET`/`DELETE /v1/responses/{id}` and
//! `previous_response_id`. Bounded by entries, bytes and age; the oldest go first, expired ones on
//! every access. Nothing is written to disk.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_protocol::responses::Response;
use hearth_protocol::ChatMessage;

/// The store's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most responses kept; 0 keeps none.
    pub entries: usize,
    /// Most bytes kept (responses and their conversations, as JSON).
    pub bytes: usize,
    /// How long a response is kept.
    pub ttl: Duration,
}

/// A stored response and the conversation that led to it, its own answer included.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The response as returned.
    pub response: Response,
    /// Every message a follow-up continues from (`instructions` excluded, as OpenAI does).
    pub conversation: Arc<Vec<ChatMessage>>,
}

#[derive(Debug)]
struct Entry {
    stored: Stored,
    bytes: usize,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Ids, oldest first (may hold ids already deleted).
    order: VecDeque<String>,
    bytes: usize,
}

/// The bounded, shared store.
#[derive(Debug)]
pub struct ResponseStore {
    limits: StoreLimits,
    inner: Mutex<Inner>,
}

impl ResponseStore {
    /// An empty store with these bounds.
    pub fn new(limits: StoreLimits) -> Self {
        Self { limits, inner: Mutex::default() }
    }

    /// Keeps `stored` under its response's id, dropping the oldest entries to stay in bounds; a response
    /// larger than the whole byte budget is not kept.
    pub fn insert(&self, stored: Stored) {
        let bytes = serde_json::to_vec(&stored.response).map_or(0, |v| v.len())
            + serde_json::to_vec(&*stored.conversation).map_or(0, |v| v.len());
        if self.limits.entries == 0 || bytes > self.limits.bytes {
            return;
        }
        let mut inner = self.lock();
        let now = Instant::now();
        Self::expire(&mut inner, now);
        while inner.entries.len() >= self.limits.entries || inner.bytes + bytes > self.limits.bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            Self::remove_entry(&mut inner, &oldest);
        }
        let id = stored.response.id.clone();
        inner.bytes += bytes;
        inner.order.push_back(id.clone());
        inner.entries.insert(id, Entry { stored, bytes, expires: now + self.limits.ttl });
    }

    /// The stored response `id`, unless it was deleted, evicted or has expired.
    pub fn get(&self, id: &str) -> Option<Stored> {
        let mut inner = self.lock();
        Self::expire(&mut inner, Instant::now());
        inner.entries.get(id).map(|e| e.stored.clone())
    }

    /// Deletes `id`; whether it was there.
    pub fn delete(&self, id: &str) -> bool {
        let mut inner = self.lock();
        Self::expire(&mut inner, Instant::now());
        Self::remove_entry(&mut inner, id)
    }

    /// Responses and bytes kept now.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops entries past their time, oldest first (all share one time-to-live).
    fn expire(inner: &mut Inner, now: Instant) {
        while let Some(id) = inner.order.front() {
            match inner.entries.get(id) {
                Some(entry) if entry.expires > now => break,
                _ => {
                    let id = inner.order.pop_front().expect("front exists");
                    Self::remove_entry(inner, &id);
                }
            }
        }
    }

    fn remove_entry(inner: &mut Inner, id: &str) -> bool {
        match inner.entries.remove(id) {
            Some(entry) => {
                inner.bytes -= entry.bytes;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, text: &str) -> Stored {
        let response: Response = serde_json::from_value(serde_json::json!({
            "id": id, "object": "response", "created_at": 0, "status": "completed", "error": null,
            "incomplete_details": null, "instructions": null, "max_output_tokens": null, "model": "m",
            "output": [], "parallel_tool_calls": true, "previous_response_id": null, "reasoning": {},
            "store": true, "temperature": null, "text": {}, "tool_choice": "auto", "tools": [], "top_p": null,
            "truncation": "disabled", "usage": null, "metadata": {}
        }))
        .unwrap();
        let message: ChatMessage =
            serde_json::from_value(serde_json::json!({"role": "user", "content": text})).unwrap();
        Stored { response, conversation: Arc::new(vec![message]) }
    }

    fn limits(entries: usize, bytes: usize, ttl: Duration) -> StoreLimits {
        StoreLimits { entries, bytes, ttl }
    }

    #[test]
    fn keeps_at_most_the_entry_limit_oldest_out_first() {
        let store = ResponseStore::new(limits(2, 1 << 20, Duration::from_secs(60)));
        for id in ["a", "b", "c"] {
            store.insert(stored(id, "hi"));
        }
        assert!(store.get("a").is_none());
        assert!(store.get("b").is_some() && store.get("c").is_some());
        assert!(store.delete("b"));
        assert!(!store.delete("b"));
        assert_eq!(store.usage().0, 1);
    }

    #[test]
    fn keeps_within_the_byte_budget() {
        let one = {
            let store = ResponseStore::new(limits(10, 1 << 20, Duration::from_secs(60)));
            store.insert(stored("x", &"y".repeat(1000)));
            store.usage().1
        };
        let budget = one * 3 + 10; // ids here are a byte longer than "x"
        let store = ResponseStore::new(limits(10, budget, Duration::from_secs(60)));
        for i in 0..10 {
            store.insert(stored(&format!("r{i}"), &"y".repeat(1000)));
            assert!(store.usage().1 <= budget);
        }
        assert_eq!(store.usage().0, 3);
        store.insert(stored("huge", &"y".repeat(one * 4)));
        assert!(store.get("huge").is_none(), "a response over the whole budget is not kept");
    }

    #[test]
    fn expired_responses_are_gone() {
        let store = ResponseStore::new(limits(10, 1 << 20, Duration::from_millis(30)));
        store.insert(stored("a", "hi"));
        assert!(store.get("a").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(store.get("a").is_none());
        assert_eq!(store.usage(), (0, 0));
    }

    #[test]
    fn a_store_of_no_entries_keeps_nothing() {
        let store = ResponseStore::new(limits(0, 1 << 20, Duration::from_secs(60)));
        store.insert(stored("a", "hi"));
        assert!(store.get("a").is_none());
    }
}
