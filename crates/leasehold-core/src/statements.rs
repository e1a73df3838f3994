//! Statement texts a store writes for a set of queues (its claim, with the names and the limit written
//! in as constants, so that the server plans it once per shape), kept so each is written once.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Texts written for a key (the claim's limit, and whatever else shapes it) and a set of queues. A
/// worker has one set of queues and claims in about a dozen sizes, so a process keeps a few texts; past
/// [`KeptStatements::MAX_KEPT`], the others are written anew each time they are asked for.
#[derive(Debug)]
pub struct KeptStatements<K> {
    kept: Mutex<Kept<K>>,
}

#[derive(Debug)]
struct Kept<K> {
    /// By key, then by queues (looked up without a copy of them).
    texts: HashMap<K, HashMap<Vec<String>, Arc<str>>>,
    count: usize,
}

impl<K: Hash + Eq> KeptStatements<K> {
    /// The most texts kept.
    pub const MAX_KEPT: usize = 256;

    /// An empty set, for a `static` (`LazyLock::new(KeptStatements::new)`).
    pub fn new() -> Self {
        Self { kept: Mutex::new(Kept { texts: HashMap::new(), count: 0 }) }
    }

    /// The text for `key` and `queues`: the kept one, or `write()`'s, kept while there is room. The
    /// text is written outside the lock.
    pub fn get_or_write(&self, key: K, queues: &[String], write: impl FnOnce() -> String) -> Arc<str> {
        if let Some(text) = self.kept.lock().unwrap().texts.get(&key).and_then(|by_queues| by_queues.get(queues)) {
            return text.clone();
        }
        let text: Arc<str> = write().into();
        let mut kept = self.kept.lock().unwrap();
        let Kept { texts, count } = &mut *kept;
        if *count >= Self::MAX_KEPT {
            return text;
        }
        // another caller may have written the same text meanwhile: keep the first
        match texts.entry(key).or_default().entry(queues.to_vec()) {
            Entry::Occupied(first) => first.get().clone(),
            Entry::Vacant(slot) => {
                *count += 1;
                slot.insert(text).clone()
            }
        }
    }
}

impl<K: Hash + Eq> Default for KeptStatements<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::KeptStatements;

    #[test]
    fn a_text_is_written_once_per_key_and_queues_and_no_more_are_kept_past_the_limit() {
        let kept = KeptStatements::<u32>::new();
        let queues = vec!["a".to_owned(), "b".to_owned()];
        let first = kept.get_or_write(1, &queues, || "one".into());
        let again = kept.get_or_write(1, &queues, || unreachable!("kept"));
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert_eq!(&*kept.get_or_write(2, &queues, || "two".into()), "two");
        assert_eq!(&*kept.get_or_write(1, &queues[..1], || "three".into()), "three");
        for n in 3..KeptStatements::<u32>::MAX_KEPT as u32 + 10 {
            kept.get_or_write(n, &queues, || format!("{n}"));
        }
        let mut writes = 0;
        let past = KeptStatements::<u32>::MAX_KEPT as u32 + 5;
        for _ in 0..2 {
            kept.get_or_write(past, &queues, || {
                writes += 1;
                "past".into()
            });
        }
        assert_eq!(writes, 2, "a text past the limit is written each time");
    }
}
