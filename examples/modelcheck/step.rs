//! One step of the model on the real kernel: the description's bookkeeping, the real
//! operation on the replica the step touches (through the step cache, `memo`), and reading
//! the replica back into the description.

use crate::memo::Effect;
use crate::model::{kernel, Action, Desc, Mat, MbView, Mc, NodeDesc, FLAGS, RACED};
use crate::world::{self, letter, Lbl, Names, Payload, Snap, NOW};
use dovetail::crdt::view::MailboxMeta;
use dovetail::model::{BlobId, Flag, FlagSet, Guid, MailboxName, UidSet};
use dovetail::node::{FlagOp, NewMessage, Replica};
use dovetail::store::MemKv;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

impl Mc {
    /// Reads node `i`'s replica back into what the description says of it (labelling the
    /// changes a local operation made) and freezes its store. `guids`: the GUIDs the
    /// operation drew, with their labels.
    pub(crate) fn read(
        &self,
        d: &Desc,
        mat: &Mat,
        i: usize,
        (kv, r): &mut (MemKv, Replica),
        made_by: Option<&Action>,
        guids: Vec<(Guid, Lbl)>,
    ) -> Result<Effect, String> {
        let mut names = mat.names.clone();
        if !guids.is_empty() {
            let g = Arc::make_mut(&mut names.guids);
            for (x, l) in &guids {
                g.insert(*x, l.clone());
            }
        }
        let before: BTreeSet<Lbl> = d.nodes[i].docs.values().flatten().cloned().collect();
        let (heads, changed) = world::changed_docs(kv, &mat.heads[i])?;
        let mut docs: BTreeMap<String, BTreeSet<Lbl>> = d.nodes[i]
            .docs
            .iter()
            .filter(|(doc, _)| mat.heads[i].get(*doc) == heads.get(*doc))
            .map(|(doc, l)| (doc.clone(), l.clone()))
            .collect();
        let mut infos = Vec::new();
        for (doc, c) in changed {
            let h = world::hash_of(&c);
            let info = match names.changes.get(&h) {
                Some(info) => Arc::clone(info),
                None => {
                    let mut info = names.label(&c, &doc)?;
                    info.name_op = match made_by {
                        Some(Action::Delete { .. } | Action::Create { .. }) => {
                            info.mailbox.is_none()
                        }
                        Some(Action::Append { mailbox, .. }) => mailbox == RACED,
                        _ => false,
                    };
                    if info.name_op {
                        info.knew = before
                            .iter()
                            .filter(|l| names.changes.values().any(|c| c.name_op && c.label == **l))
                            .cloned()
                            .collect();
                    }
                    let info = Arc::new(info);
                    Arc::make_mut(&mut names.changes).insert(h, Arc::clone(&info));
                    info
                }
            };
            docs.entry(doc).or_default().insert(info.label.clone());
            infos.push((h, info));
        }
        let pending: BTreeSet<Lbl> = world::pending(kv)?
            .iter()
            .filter_map(|h| names.changes.get(h).map(|c| c.label.clone()))
            .collect();
        let metas = world::mailbox_metas(kv)?;
        let mut applied = BTreeMap::new();
        let mut homeless = BTreeMap::new();
        for (id, m) in &metas {
            let mb = names.mailbox(id);
            applied.insert(mb.clone(), self.clock(&names, m));
            let h: Vec<(Lbl, usize)> = m
                .homeless
                .iter()
                .map(|(g, h)| {
                    let l = names.guids.get(g).cloned().unwrap_or_else(|| "?".into());
                    (l, names.node_index(&h.op.node).unwrap_or(usize::MAX))
                })
                .collect();
            if !h.is_empty() {
                homeless.insert(mb, h);
            }
        }
        let mut view = Vec::new();
        for s in kernel(r.status(&world::account()))? {
            let rows = kernel(r.list(&world::account(), &mbname(&s.name)))?
                .into_iter()
                .map(|(u, row)| {
                    let l = names
                        .guids
                        .get(&row.guid)
                        .cloned()
                        .unwrap_or_else(|| "?".into());
                    let f = row.flags.iter().map(|f| f.as_str().to_string()).collect();
                    (u.get(), l, f)
                })
                .collect();
            view.push(MbView {
                id: names.mailbox(&s.id),
                name: s.name,
                uv: s.uidvalidity,
                uidnext: s.uidnext,
                rows,
            });
        }
        Ok(Effect {
            snap: Arc::new(Snap::of(kv, &mat.bodies, Some(&mat.snaps[i]))?),
            heads: Arc::new(heads),
            docs: Arc::new(docs),
            pending: Arc::new(pending),
            applied: Arc::new(applied),
            homeless: Arc::new(homeless),
            view: Arc::new(view),
            infos,
            guids,
        })
    }

    /// Puts what an operation did to node `i` into the state, and checks the invariants on
    /// the node.
    pub(crate) fn apply(&self, d: &mut Desc, mat: &mut Mat, i: usize, e: &Effect) {
        mat.snaps[i] = Arc::clone(&e.snap);
        mat.heads[i] = Arc::clone(&e.heads);
        if e.infos
            .iter()
            .any(|(h, _)| !mat.names.changes.contains_key(h))
        {
            let m = Arc::make_mut(&mut mat.names.changes);
            for (h, info) in &e.infos {
                m.entry(*h).or_insert_with(|| Arc::clone(info));
            }
        }
        if !e.guids.is_empty() {
            let m = Arc::make_mut(&mut mat.names.guids);
            for (g, l) in &e.guids {
                m.insert(*g, l.clone());
            }
        }
        let n = &mut d.nodes[i];
        n.docs = Arc::clone(&e.docs);
        n.pending = Arc::clone(&e.pending);
        n.applied = Arc::clone(&e.applied);
        n.homeless = Arc::clone(&e.homeless);
        n.view = Arc::clone(&e.view);
        crate::props::check_node(self, d, mat, i);
    }

    fn clock(&self, names: &Names, m: &MailboxMeta) -> Vec<u64> {
        names
            .nodes
            .iter()
            .map(|n| m.applied.get(n).copied().unwrap_or(0))
            .collect()
    }

    /// Node `from`'s document `doc` as it is now, with every blob `from` has.
    fn payload(&self, mat: &Mat, from: usize, doc: &str) -> Result<Arc<Payload>, String> {
        self.memo.payload(&mat.snaps[from], doc, || {
            let (kv, _) = mat.snaps[from].open(&self.opts)?;
            let bytes = world::save_doc(&kv, doc)?.ok_or("sending a missing document")?;
            let mut blobs = Vec::new();
            for (id, b) in mat.bodies.iter() {
                if dovetail::store::Kv::blob_has(&kv, id).map_err(|e| e.to_string())? {
                    blobs.push((BlobId(*id), b.clone()));
                }
            }
            Ok(Payload::new(bytes, blobs))
        })
    }

    /// Runs `a`: the bookkeeping of the description here, the real operation on the node it
    /// touches through the step cache.
    pub(crate) fn step(&self, d: &mut Desc, mat: &mut Mat, a: &Action) -> Result<(), String> {
        // What the touched node's kernel is asked to do, exactly: with the store's hash,
        // the key of the step cache. A delivery and a sync of the same bytes are one step.
        let mut input = None;
        let mut label = None;
        let mut at = None;
        let (node, op) = match a {
            Action::Send { from, to, doc } => {
                let payload = self.payload(mat, *from, doc)?;
                let labels = d.nodes[*from].docs.get(doc).cloned().unwrap_or_default();
                d.net.insert((*from, *to, doc.clone()), labels);
                mat.net.insert((*from, *to, doc.clone()), payload);
                return Ok(());
            }
            Action::Sync { from, to, doc } => {
                let payload = self.payload(mat, *from, doc)?;
                let op = format!("deliver {from} {doc} {}", hex::encode(payload.hash));
                input = Some(payload);
                (*to, op)
            }
            Action::Deliver { from, to, doc, dup } => {
                let key = (*from, *to, doc.clone());
                let payload = mat.net.get(&key).cloned().ok_or("no such message")?;
                if *dup {
                    d.used.dups += 1;
                } else {
                    d.net.remove(&key);
                    mat.net.remove(&key);
                }
                let op = format!("deliver {from} {doc} {}", hex::encode(payload.hash));
                input = Some(payload);
                (*to, op)
            }
            Action::Append { node, mailbox } => {
                d.used.appends += 1;
                d.used.per_node[*node] += 1;
                let l: Lbl = format!("{}{}", letter(*node), d.used.per_node[*node]).into();
                let bytes = world::body(&l);
                let id = BlobId::of(&bytes);
                Arc::make_mut(&mut mat.bodies).insert(*id.as_bytes(), bytes);
                let op = format!("append {mailbox} {l}");
                label = Some(l);
                (*node, op)
            }
            Action::Expunge { node, msg } => {
                d.used.expunges += 1;
                let (name, uid) = find(&d.nodes[*node], msg)?;
                let op = format!("expunge {name} {uid}");
                at = Some((name, uid));
                (*node, op)
            }
            Action::Flag {
                node,
                msg,
                flag,
                add,
            } => {
                d.used.flags += 1;
                let (name, uid) = find(&d.nodes[*node], msg)?;
                let op = format!("flag {name} {uid} {flag} {add}");
                at = Some((name, uid));
                (*node, op)
            }
            Action::Renumber { node, grace_over } => {
                d.used.renumbers += 1;
                (*node, format!("renumber {grace_over}"))
            }
            Action::Restart { node } => (*node, "restart".to_string()),
            Action::Delete { node } => {
                d.used.deletes += 1;
                (*node, "delete".to_string())
            }
            Action::Create { node } => {
                d.used.creates += 1;
                (*node, "create".to_string())
            }
        };
        let snap = Arc::clone(&mat.snaps[node]);
        let eff = self.memo.step(&snap, node, &op, || {
            self.run(d, mat, node, a, input.as_deref(), label, at)
        });
        match &*eff {
            Ok(e) => {
                self.apply(d, mat, node, e);
                Ok(())
            }
            Err(e) => Err(e.clone()),
        }
    }

    /// The real operation of `a` on node `node`, read back.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        d: &Desc,
        mat: &Mat,
        node: usize,
        a: &Action,
        input: Option<&Payload>,
        label: Option<Lbl>,
        at: Option<(String, u32)>,
    ) -> Result<Effect, String> {
        let acct = world::account();
        let mut r = mat.snaps[node].open(&self.opts)?;
        let rep = &mut r.1;
        let mut guids = Vec::new();
        let at = || at.clone().ok_or("no UID to act on");
        match a {
            Action::Sync { from, doc, .. } | Action::Deliver { from, doc, .. } => {
                let payload = input.ok_or("no message")?;
                world::deliver(rep, &mat.names.nodes[*from], doc, payload)?;
            }
            Action::Append { mailbox, .. } => {
                let label = label.ok_or("no label")?;
                let out = kernel(rep.append(
                    &acct,
                    &mbname(mailbox),
                    vec![NewMessage {
                        name: label.to_string(),
                        bytes: world::body(&label),
                        flags: FlagSet::new(),
                        internal_date: NOW,
                    }],
                    NOW,
                ))?;
                for (_, g) in out {
                    guids.push((g, label.clone()));
                }
            }
            Action::Expunge { .. } => {
                let (name, uid) = at()?;
                kernel(rep.expunge(&acct, &mbname(&name), &uid_set(uid), NOW))?;
            }
            Action::Flag { flag, add, .. } => {
                let (name, uid) = at()?;
                let f: FlagSet = [Flag::try_from(FLAGS[*flag]).map_err(|e| e.to_string())?]
                    .into_iter()
                    .collect();
                let op = if *add {
                    FlagOp::Add(f)
                } else {
                    FlagOp::Remove(f)
                };
                kernel(rep.store_flags(&acct, &mbname(&name), &uid_set(uid), &op, NOW))?;
            }
            Action::Renumber { grace_over, .. } => {
                let grace = if *grace_over { 0 } else { i64::MAX };
                kernel(rep.renumber_after(NOW, grace))?;
            }
            Action::Restart { .. } => {
                kernel(rep.deliver_all(NOW))?;
            }
            Action::Delete { .. } => {
                kernel(rep.delete_mailbox(&acct, &mbname(RACED), NOW))?;
            }
            Action::Create { .. } => {
                kernel(rep.create_mailbox(&acct, &mbname(RACED)))?;
            }
            Action::Send { .. } => unreachable!("a send touches no store"),
        }
        self.read(d, mat, node, &mut r, Some(a), guids)
    }
}

pub fn mbname(s: &str) -> MailboxName {
    MailboxName::try_from(s).expect("valid mailbox name")
}

pub fn uid_set(uid: u32) -> UidSet {
    UidSet::try_from(uid.to_string().as_str()).expect("a UID is a UID set")
}

/// Where node `n` shows message `msg`: its mailbox name and UID.
pub fn find(n: &NodeDesc, msg: &Lbl) -> Result<(String, u32), String> {
    n.view
        .iter()
        .find_map(|m| {
            m.rows
                .iter()
                .find(|(_, l, _)| l == msg)
                .map(|(u, _, _)| (m.name.clone(), *u))
        })
        .ok_or_else(|| format!("{msg} is not shown"))
}
