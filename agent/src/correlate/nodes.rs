//! The held spans by id: a slab of nodes and a small index.
//!
//! Spans are held for microseconds to seconds and released in about the
//! order they came. The index maps a span id to a slot (16-byte entries,
//! cache-friendly), the slots are reused last-freed-first, so the few
//! hundred nodes held at a time stay in cache whatever the peak was.

use foldhash::HashMap;

use super::SpanId;

pub struct Slab<T> {
    index: HashMap<SpanId, u32>,
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains_key(&self, id: &SpanId) -> bool {
        self.index.contains_key(id)
    }

    pub fn get(&self, id: &SpanId) -> Option<&T> {
        let &i = self.index.get(id)?;
        self.slots[i as usize].as_ref()
    }

    pub fn get_mut(&mut self, id: &SpanId) -> Option<&mut T> {
        let &i = self.index.get(id)?;
        self.slots[i as usize].as_mut()
    }

    /// Inserts `value` under `id` (the caller checked it is not there).
    pub fn insert(&mut self, id: SpanId, value: T) {
        if let Some(&i) = self.index.get(&id) {
            self.slots[i as usize] = Some(value);
            return;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id, i);
    }

    pub fn remove(&mut self, id: &SpanId) -> Option<T> {
        let i = self.index.remove(id)?;
        self.free.push(i);
        let v = self.slots[i as usize].take();
        if self.index.is_empty() {
            // Nothing held: give back the peak's memory.
            self.slots.clear();
            self.free.clear();
            if self.slots.capacity() > 1024 {
                self.slots.shrink_to(1024);
                self.free.shrink_to(1024);
            }
        }
        v
    }

    pub fn keys(&self) -> impl Iterator<Item = &SpanId> {
        self.index.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused() {
        let mut s = Slab::default();
        s.insert([1; 8], "a");
        s.insert([2; 8], "b");
        assert_eq!(s.remove(&[1; 8]), Some("a"));
        s.insert([3; 8], "c");
        assert_eq!(s.slots.len(), 2, "the freed slot took the new one");
        assert_eq!(s.get(&[3; 8]), Some(&"c"));
        assert_eq!(s.get(&[1; 8]), None);
        assert_eq!(s.len(), 2);
        s.insert([3; 8], "d");
        assert_eq!(s.get(&[3; 8]), Some(&"d"));
        assert_eq!(s.remove(&[2; 8]), Some("b"));
        assert_eq!(s.remove(&[3; 8]), Some("d"));
        assert!(s.is_empty());
        assert!(s.slots.is_empty());
        assert_eq!(s.remove(&[3; 8]), None);
    }
}
