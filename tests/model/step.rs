//! One step of a random history, and running a history: the harness's interpreter of [`Op`].

use super::sim::*;
use dovetail::model::Uid;
use dovetail::node::FlagOp;

impl Sim {
    pub fn step(&mut self, op: &Op) -> R<()> {
        let k = self.k();
        let node = |n: u8| n as usize % k;
        self.log(format!("t={} {op:?}", self.now));
        match op {
            Op::Append { node: n, mb, msgs } => {
                let i = node(*n);
                let m = self.pick_mailbox(i, *mb)?;
                self.append(i, &m.name, msgs)?;
            }
            Op::Flags {
                node: n,
                mb,
                sel,
                kind,
                flags,
            } => {
                let i = node(*n);
                let m = self.pick_mailbox(i, *mb)?;
                let uids: Vec<Uid> = sel
                    .pick(&self.rows(i, &m.name)?)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect();
                let f = flag_set(*flags);
                let op = match kind % 3 {
                    0 => FlagOp::Add(f),
                    1 => FlagOp::Remove(f),
                    _ => FlagOp::Replace(f),
                };
                self.store_flags(i, &m.name, &uids, &op)?;
            }
            Op::Expunge { node: n, mb, sel } => {
                let i = node(*n);
                let m = self.pick_mailbox(i, *mb)?;
                let uids: Vec<Uid> = sel
                    .pick(&self.rows(i, &m.name)?)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect();
                self.expunge(i, &m.name, &uids)?;
            }
            Op::Copy {
                node: n,
                from,
                to,
                sel,
                remove_source,
            } => {
                let i = node(*n);
                let f = self.pick_mailbox(i, *from)?;
                let t = self.pick_mailbox(i, *to)?;
                let uids: Vec<Uid> = sel
                    .pick(&self.rows(i, &f.name)?)
                    .into_iter()
                    .map(|(u, _)| u)
                    .collect();
                self.copy(i, &f.name, &t.name, &uids, *remove_source)?;
            }
            Op::Create { node: n, name } => {
                let i = node(*n);
                let name = NAMES[*name as usize % NAMES.len()];
                match self.nodes[i].create_mailbox(&account(), &mailbox(name)) {
                    Ok(uv) => {
                        self.stats.mailbox_ops += 1;
                        let id = self
                            .status(i)?
                            .into_iter()
                            .find(|s| s.uidvalidity == uv.get())
                            .map(|s| s.id)
                            .ok_or_else(|| {
                                format!("node {i} does not list the {name} it created")
                            })?;
                        self.given_names
                            .entry(id)
                            .or_default()
                            .insert(name.to_string());
                    }
                    Err(e) if expected(&e) => self.stats.errors += 1,
                    Err(e) => return Err(err(e)),
                }
            }
            Op::Rename { node: n, which, to } => {
                let i = node(*n);
                if let Some(m) = self.pick_other(i, *which)? {
                    let to = NAMES[*to as usize % NAMES.len()];
                    match self.nodes[i].rename_mailbox(&account(), &mailbox(&m.name), &mailbox(to))
                    {
                        Ok(()) => {
                            self.stats.mailbox_ops += 1;
                            self.given_names
                                .entry(m.id)
                                .or_default()
                                .insert(to.to_string());
                        }
                        Err(e) if expected(&e) => self.stats.errors += 1,
                        Err(e) => return Err(err(e)),
                    }
                }
            }
            Op::Delete { node: n, which } => {
                let i = node(*n);
                if let Some(m) = self.pick_other(i, *which)? {
                    self.delete(i, &m.name)?;
                }
            }
            Op::Restart { node: n, keep } => {
                let i = node(*n);
                let unflushed = self.kvs[i].unflushed();
                self.crash_restart(i, *keep as usize % (unflushed + 1))?
            }
            Op::CrashDuring {
                node: n,
                what,
                other,
                doc,
                after,
                keep,
            } => self.crash_during(node(*n), *what, *other, *doc, *after, *keep)?,
            Op::AppendTo {
                node: n,
                name,
                msgs,
            } => {
                let i = node(*n);
                let name = NAMES[*name as usize % NAMES.len()];
                if self.status(i)?.iter().any(|s| s.name == name) {
                    self.append(i, name, msgs)?;
                }
            }
            Op::Renumber { node: n } => {
                self.renumber(node(*n))?;
            }
            Op::Tick { secs } => self.now += i64::from(*secs % 8),
            Op::Generate { from, to, doc } => {
                let (a, b) = self.pair(*from, *to);
                let docs = self.docs_of(a, b)?;
                let d = docs[*doc as usize % docs.len()].clone();
                self.generate(a, b, &d)?;
            }
            Op::Deliver { queue, dup } => {
                if let Some(key) = self.queue(*queue) {
                    let m = self.pop(&key).expect("non-empty queue");
                    self.log(format!("  {} -> {} {}", key.0, key.1, key.2));
                    self.receive(key.0, key.1, &key.2, &m)?;
                    if *dup {
                        self.queues.entry(key).or_default().push_front(m);
                    }
                }
            }
            Op::Lose { queue } => {
                if let Some(key) = self.queue(*queue) {
                    self.pop(&key);
                    self.reset(key.0, key.1);
                }
            }
            Op::Reset { a, b } => {
                let (a, b) = self.pair(*a, *b);
                self.reset(a, b);
            }
            Op::Pump { a, b, doc } => {
                let (a, b) = self.pair(*a, *b);
                let docs = self.docs_of(a, b)?;
                let d = docs[*doc as usize % docs.len()].clone();
                self.log(format!("  {a} <-> {b} {d}"));
                self.pump(a, b, &d)?;
            }
            Op::Blobs { node: n } => {
                self.blobs(node(*n))?;
            }
            Op::Quiesce => {
                self.quiesce()?;
                self.check_converged()?;
            }
        }
        self.now += 1;
        self.check()
    }

    // ---- invariants ----

    /// Invariants 2, 3, 4 and 6 on every node, plus the view's own consistency.
    /// Syncs every document of `a` and `b` and gives both the blobs they miss.
    pub fn sync(&mut self, a: usize, b: usize) -> R<()> {
        self.log(format!("sync {a} <-> {b}"));
        for d in self.docs_of(a, b)? {
            self.pump(a, b, &d)?;
        }
        self.blobs(a)?;
        self.blobs(b)?;
        self.check()
    }

    /// Node 0 appends messages to INBOX and every node gets them: the common start of the
    /// flag scenarios.
    pub fn shared_messages(&mut self, msgs: &[(u8, u8)]) -> R<()> {
        self.append(0, "INBOX", msgs)?;
        self.quiesce()?;
        self.check_converged()?;
        for i in 0..self.k() {
            if self.rows(i, "INBOX")?.len() != msgs.len() {
                return Err(format!("node {i} does not show the shared messages"));
            }
        }
        Ok(())
    }

    /// Runs a history, then quiesces and checks convergence.
    pub fn run(&mut self, ops: &[Op]) -> R<()> {
        for op in ops {
            self.stats.steps += 1;
            self.step(op).map_err(|e| self.report(&e))?;
        }
        self.quiesce().map_err(|e| self.report(&e))?;
        self.check_converged().map_err(|e| self.report(&e))?;
        self.stats.uid_clashes = self.uid_clashes(0)?;
        if std::env::var_os("MODEL_STATS").is_some() {
            eprintln!("k={} {:?}", self.k(), self.stats);
        }
        Ok(())
    }
}
