//! The simulated network: per-(from, to, document) queues of automerge sync messages,
//! connection resets, and blobs that travel separately.

use super::sim::*;
use std::collections::BTreeSet;

impl Sim {
    /// Every document either node has, account documents first.
    pub fn docs_of(&self, a: usize, b: usize) -> R<Vec<String>> {
        let mut docs = BTreeSet::new();
        for i in [a, b] {
            for (d, _) in self.nodes[i].doc_heads().map_err(err)? {
                docs.insert(d);
            }
        }
        let mut docs: Vec<String> = docs.into_iter().collect();
        docs.sort_by_key(|d| !d.starts_with("acct/"));
        Ok(docs)
    }

    pub fn pair(&self, a: u8, b: u8) -> (usize, usize) {
        let k = self.k();
        let a = a as usize % k;
        let b = (a + 1 + b as usize % (k - 1)) % k;
        (a, b)
    }

    pub fn generate(&mut self, from: usize, to: usize, doc: &str) -> R<bool> {
        let msg = self.nodes[from]
            .sync_generate(&self.ids[to], doc)
            .map_err(err)?;
        match msg {
            Some(m) => {
                self.queues
                    .entry((from, to, doc.to_string()))
                    .or_default()
                    .push_back(m);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn receive(&mut self, from: usize, to: usize, doc: &str, msg: &[u8]) -> R<()> {
        let missing = self.nodes[to]
            .sync_receive(&self.ids[from], doc, msg, self.now)
            .map_err(|e| format!("node {to} receiving {doc} from {from}: {e}"))?;
        self.stats.delivered += 1;
        self.missing[to].extend(missing);
        Ok(())
    }

    /// The non-empty queue at index `q` (modulo), if any.
    pub fn queue(&self, q: u8) -> Option<(usize, usize, String)> {
        let keys: Vec<&(usize, usize, String)> = self
            .queues
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k)
            .collect();
        (!keys.is_empty()).then(|| keys[q as usize % keys.len()].clone())
    }

    pub fn pop(&mut self, key: &(usize, usize, String)) -> Option<Vec<u8>> {
        let q = self.queues.get_mut(key)?;
        let m = q.pop_front();
        if q.is_empty() {
            self.queues.remove(key);
        }
        m
    }

    /// The connection of `a` and `b` closes: messages in flight are lost, both end their
    /// sessions (they resume from the persisted shared heads).
    pub fn reset(&mut self, a: usize, b: usize) {
        self.queues
            .retain(|(f, t, _), _| !((*f == a && *t == b) || (*f == b && *t == a)));
        let (ia, ib) = (self.ids[a], self.ids[b]);
        self.nodes[a].end_sessions(&ib);
        self.nodes[b].end_sessions(&ia);
    }

    /// Delivers everything queued from `from` to `to` about `doc`, in order.
    pub fn flush_queue(&mut self, from: usize, to: usize, doc: &str) -> R<()> {
        let key = (from, to, doc.to_string());
        while let Some(m) = self.pop(&key) {
            self.receive(from, to, doc, &m)?;
        }
        Ok(())
    }

    /// Syncs `doc` between `a` and `b` until neither has anything to say.
    pub fn pump(&mut self, a: usize, b: usize, doc: &str) -> R<()> {
        self.flush_queue(a, b, doc)?;
        self.flush_queue(b, a, doc)?;
        for _ in 0..64 {
            let mut quiet = true;
            for (x, y) in [(a, b), (b, a)] {
                let msg = self.nodes[x]
                    .sync_generate(&self.ids[y], doc)
                    .map_err(err)?;
                if let Some(m) = msg {
                    quiet = false;
                    self.receive(x, y, doc, &m)?;
                }
            }
            if quiet {
                return Ok(());
            }
        }
        Err(format!("sync of {doc} between {a} and {b} did not settle"))
    }

    /// Gives node `i` the blobs it misses (from whichever node has them) and lets it apply
    /// what waited for them, repeatedly. Returns whether it got any.
    pub fn blobs(&mut self, i: usize) -> R<bool> {
        let mut any = false;
        for _ in 0..16 {
            let wanted = std::mem::take(&mut self.missing[i]);
            let mut got = false;
            for b in wanted {
                if self.nodes[i].blob(&b).map_err(err)?.is_some() {
                    got = true;
                    continue;
                }
                let mut bytes = None;
                for j in 0..self.k() {
                    if let Some(x) = self.nodes[j].blob(&b).map_err(err)? {
                        bytes = Some(x);
                        break;
                    }
                }
                match bytes {
                    Some(x) => {
                        if !self.nodes[i].put_blob(&b, &x).map_err(err)? {
                            return Err(format!("blob {b} rejected"));
                        }
                        got = true;
                    }
                    None => {
                        self.missing[i].insert(b);
                    }
                }
            }
            if !got {
                break;
            }
            any = true;
            let more = self.nodes[i].deliver_all(self.now).map_err(err)?;
            self.missing[i].extend(more);
        }
        Ok(any)
    }
}
