//! The invariant checks: after every step, at quiescence, and convergence.

use super::sim::*;
use dovetail::crdt::view::ViewRow;
use dovetail::model::{Guid, MailboxId, OpId, Uid};
use dovetail::node::MailboxStatus;
use dovetail::store::{tables, Kv, Tx};
use std::collections::{BTreeMap, BTreeSet};

impl Sim {
    pub fn check(&mut self) -> R<()> {
        for i in 0..self.k() {
            let st = self.status(i)?;
            self.count_name_races(&st);
            if self.per_name {
                self.check_names(i, &st)?;
            }
            let pending: Vec<Vec<u8>> = self.pending_keys(i)?.collect();
            for p in pending {
                if self.pending_seen[i].insert(p) {
                    self.stats.pending_changes += 1;
                }
            }
            let mut visible: BTreeMap<String, BTreeSet<Guid>> = BTreeMap::new();
            for s in &st {
                // Invariant 4: the UIDVALIDITY a mailbox shows under one name never goes
                // down (on any node). Under another name it may be lower: a rename that
                // took a greater value can lose its name register to a concurrent write of
                // the old name (two nodes that create one name derive one mailbox), and the
                // mailbox is back under the old name with that name's value.
                let key = format!("{i}/{}/{}", s.id, s.name);
                let uv = *self.uidvalidity.entry(key.clone()).or_insert(s.uidvalidity);
                if s.uidvalidity > uv {
                    self.uidvalidity.insert(key, s.uidvalidity);
                }
                if uv > s.uidvalidity {
                    return Err(format!(
                        "inv 4: node {i} mailbox {} ({}) UIDVALIDITY {} was {uv}",
                        s.name, s.id, s.uidvalidity
                    ));
                }
                let announced = self.seen[i].announced.get(&s.id).copied().unwrap_or(1);
                if s.uidnext < announced {
                    return Err(format!(
                        "inv 3: node {i} mailbox {} UIDNEXT went down from {announced} to {}",
                        s.name, s.uidnext
                    ));
                }
                let rows = self.rows(i, &s.name)?;
                if rows.len() as u64 != s.messages {
                    return Err(format!(
                        "node {i} mailbox {}: {} rows but {} messages",
                        s.name,
                        rows.len(),
                        s.messages
                    ));
                }
                let vis = visible.entry(s.id.clone()).or_default();
                for (uid, row) in &rows {
                    if uid.get() >= s.uidnext {
                        return Err(format!(
                            "node {i} mailbox {}: UID {uid} not below UIDNEXT {}",
                            s.name, s.uidnext
                        ));
                    }
                    // Blobs before claims (design notes §6): a shown message can be read.
                    if self.nodes[i].blob(&row.blob).map_err(err)?.is_none() {
                        return Err(format!(
                            "node {i} mailbox {}: UID {uid} shown without its blob",
                            s.name
                        ));
                    }
                    if !vis.insert(row.guid) {
                        return Err(format!(
                            "inv 5: node {i} mailbox {}: {:?} shown twice",
                            s.name, row.guid
                        ));
                    }
                    match self.accepted.get(&row.guid) {
                        Some(id) if *id == s.id => {}
                        other => {
                            return Err(format!(
                                "node {i} mailbox {}: {:?} at UID {uid} was accepted in {other:?}",
                                s.name, row.guid
                            ))
                        }
                    }
                    match self.seen[i].shown.get(&(s.id.clone(), uid.get())) {
                        Some(g) if *g != row.guid => {
                            return Err(format!(
                                "inv 2: node {i} mailbox {}: UID {uid} was {g:?}, now {:?}",
                                s.name, row.guid
                            ))
                        }
                        Some(_) => {}
                        None => {
                            if uid.get() < announced {
                                return Err(format!(
                                    "inv 3: node {i} mailbox {}: {:?} appeared at UID {uid} below UIDNEXT {announced}",
                                    s.name, row.guid
                                ));
                            }
                            self.seen[i]
                                .shown
                                .insert((s.id.clone(), uid.get()), row.guid);
                        }
                    }
                }
                self.seen[i]
                    .announced
                    .insert(s.id.clone(), s.uidnext.max(announced));
                self.check_modseq(i, s, &rows)?;
            }
            let ever = self.seen[i].shown.len();
            let now: usize = visible.values().map(BTreeSet::len).sum();
            self.stats.hidden = self.stats.hidden.max(ever.saturating_sub(now));
            let docs = self.nodes[i].doc_heads().map_err(err)?.len();
            self.stats.max_docs = self.stats.max_docs.max(docs);
            // Invariant 6: once this node applied the expunge of a GUID, it never shows
            // it again (and never forgets the expunge).
            let kv = self.kvs[i].clone();
            let mut tx = Tx::new(&kv);
            for (g, id) in &self.accepted {
                let mb = MailboxId::try_from(id.as_str()).map_err(|e| e.to_string())?;
                let rec = tx.view(mb).msg_rec(g).map_err(|e| e.to_string())?;
                let now_expunged = rec.is_some_and(|r| r.expunged);
                let shown = visible.get(id).is_some_and(|v| v.contains(g));
                if now_expunged {
                    if !self.expunged.contains(g) {
                        return Err(format!("node {i}: {g:?} expunged but nobody expunged it"));
                    }
                    self.seen[i].expunged.insert(*g);
                }
                if self.seen[i].expunged.contains(g) && (!now_expunged || shown) {
                    return Err(format!(
                        "inv 6: node {i}: expunged {g:?} is back (expunge mark {now_expunged}, shown {shown})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 4 per mailbox name (design notes §4, issue 5 §1) on node `i`:
    /// - a UIDVALIDITY value belongs to one mailbox id forever, anywhere (so a name never
    ///   shows a value another mailbox showed before), and two mailboxes listed at once on
    ///   a node never share one;
    /// - a name's UIDVALIDITY never goes down while the mailbox that showed the greater one,
    ///   only ever given that name, is still listed under another (the name moved between
    ///   two live mailboxes: the dsync flip-flop). It may go down when that mailbox is gone
    ///   (deleted here while another node created the name concurrently, unknowingly) or
    ///   was renamed by a user;
    /// - a deleted mailbox that came back is never listed under the name of a newer
    ///   mailbox that was only ever given that name.
    ///
    /// The third part, a name created again after a delete shows a greater UIDVALIDITY,
    /// is checked where the harness creates mailboxes (`Sim::step`).
    pub fn check_names(&mut self, i: usize, st: &[MailboxStatus]) -> R<()> {
        let mut listed: BTreeMap<u32, &MailboxStatus> = BTreeMap::new();
        for s in st {
            if let Some(o) = listed.insert(s.uidvalidity, s) {
                return Err(format!(
                    "inv 4: node {i} lists {} ({}) and {} ({}) with one UIDVALIDITY {}",
                    o.name, o.id, s.name, s.id, s.uidvalidity
                ));
            }
            let owner = self
                .uv_owner
                .entry(s.uidvalidity)
                .or_insert_with(|| s.id.clone());
            if *owner != s.id {
                return Err(format!(
                    "inv 4: node {i} shows {} ({}) with UIDVALIDITY {}, which mailbox {owner} showed before",
                    s.name, s.id, s.uidvalidity
                ));
            }
        }
        // Only ever given one name: where it is listed is the system's choice, not a user's.
        let only = |id: &String, name: &String| {
            self.given_names
                .get(id)
                .is_some_and(|n| n.len() == 1 && n.contains(name))
        };
        for s in st {
            match self.name_uv[i].get(&s.name) {
                Some((b, holder)) if s.uidvalidity < *b => {
                    let moved = st
                        .iter()
                        .find(|m| m.id == *holder)
                        .filter(|m| m.name != s.name && only(&m.id, &s.name));
                    if let Some(m) = moved {
                        return Err(format!(
                            "inv 4: node {i} shows {} with UIDVALIDITY {} ({}), below the {b} it showed before, \
                             while that mailbox ({holder}) is still listed as {}",
                            s.name, s.uidvalidity, s.id, m.name
                        ));
                    }
                }
                Some((b, _)) if s.uidvalidity == *b => {}
                _ => {
                    self.name_uv[i].insert(s.name.clone(), (s.uidvalidity, s.id.clone()));
                }
            }
        }
        // A deleted mailbox that came back (a concurrent append) never holds the name of a
        // newer mailbox that was only ever given that name.
        for r in st.iter().filter(|s| self.deleted_ids.contains(&s.id)) {
            for m in st.iter().filter(|m| m.uidvalidity > r.uidvalidity) {
                let Some(names) = self.given_names.get(&m.id) else {
                    continue;
                };
                if names.len() == 1 && names.contains(&r.name) {
                    return Err(format!(
                        "inv 4: node {i} lists the restored mailbox {} (UIDVALIDITY {}) under the name of the newer {} (UIDVALIDITY {}, listed as {})",
                        r.id, r.uidvalidity, m.id, m.uidvalidity, m.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Counts a mailbox name race: two listed mailboxes that were given the same name.
    fn count_name_races(&mut self, st: &[MailboxStatus]) {
        let mut claims: BTreeMap<&String, usize> = BTreeMap::new();
        for s in st {
            for n in self.given_names.get(&s.id).into_iter().flatten() {
                *claims.entry(n).or_default() += 1;
            }
        }
        if claims.values().any(|c| *c > 1) {
            self.stats.name_races += 1;
        }
    }

    /// UIDs that two or more GUIDs claimed, in every mailbox of node `i`.
    pub fn uid_clashes(&self, i: usize) -> R<usize> {
        let mut n = 0;
        let mut bad = None;
        self.kvs[i]
            .scan(b"Q", &mut |k, v| {
                // Claim blocks: (UID, claims) of 64 consecutive UIDs.
                match tables::decode::<Vec<(Uid, Vec<(Guid, OpId)>)>>(k, v) {
                    Ok(block) => {
                        for (_, c) in &block {
                            let guids: BTreeSet<&Guid> = c.iter().map(|(g, _)| g).collect();
                            n += usize::from(guids.len() > 1);
                        }
                    }
                    Err(e) => bad = Some(e.to_string()),
                }
                true
            })
            .map_err(|e| e.to_string())?;
        match bad {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Invariant 9 on node `i`: HIGHESTMODSEQ never decreases, every visible change (a
    /// row added, changed or removed) raises it, and a row's MODSEQ is at most it.
    pub fn check_modseq(&mut self, i: usize, s: &MailboxStatus, rows: &[(Uid, ViewRow)]) -> R<()> {
        let now: ModseqRows = rows
            .iter()
            .map(|(u, r)| (u.get(), (r.guid, r.flags.clone(), r.modseq.get())))
            .collect();
        let (hms, before) = self.seen[i]
            .modseq
            .insert(s.id.clone(), (s.highest_modseq, now.clone()))
            .unwrap_or_default();
        let bad = |what: String| Err(format!("inv 9: node {i} mailbox {}: {what}", s.name));
        if s.highest_modseq < hms {
            return bad(format!(
                "HIGHESTMODSEQ went down from {hms} to {}",
                s.highest_modseq
            ));
        }
        for (uid, (g, f, m)) in &now {
            if *m > s.highest_modseq {
                return bad(format!("UID {uid} has MODSEQ {m} above HIGHESTMODSEQ"));
            }
            let unchanged = before.get(uid).filter(|(pg, pf, _)| pg == g && pf == f);
            match unchanged {
                Some((_, _, pm)) if m < pm => {
                    return bad(format!("UID {uid} MODSEQ went down from {pm} to {m}"));
                }
                Some(_) => {}
                None if *m <= hms => {
                    return bad(format!(
                        "UID {uid} changed but its MODSEQ {m} is not above {hms}"
                    ));
                }
                _ => {}
            }
        }
        if before.keys().any(|u| !now.contains_key(u)) && s.highest_modseq <= hms {
            return bad("a row went away without raising HIGHESTMODSEQ".into());
        }
        Ok(())
    }

    // ---- quiescence ----

    /// Delivers everything between all pairs, blobs included, and renumbers with the clock
    /// past the grace period, until nothing changes. Checks the invariants all along.
    pub fn quiesce(&mut self) -> R<()> {
        self.log("quiesce".into());
        let keys: Vec<(usize, usize, String)> = self.queues.keys().cloned().collect();
        for (f, t, d) in keys {
            self.flush_queue(f, t, &d)?;
            self.check()?;
        }
        for _round in 0..24 {
            for a in 0..self.k() {
                for b in a + 1..self.k() {
                    for d in self.docs_of(a, b)? {
                        self.pump(a, b, &d)?;
                    }
                }
            }
            for i in 0..self.k() {
                self.blobs(i)?;
            }
            self.check()?;
            self.now += GRACE + 1;
            let mut renumbered = 0;
            for i in 0..self.k() {
                renumbered += self.renumber(i)?;
            }
            self.check()?;
            let heads: Vec<Vec<(String, Vec<[u8; 32]>)>> = self
                .nodes
                .iter()
                .map(|n| n.doc_heads())
                .collect::<Result<_, _>>()
                .map_err(err)?;
            let missing = self.missing.iter().any(|m| !m.is_empty());
            if renumbered == 0 && !missing && heads.iter().all(|h| *h == heads[0]) {
                return Ok(());
            }
        }
        Err("no quiescence after 24 rounds".into())
    }

    /// One node's whole visible state: mailboxes and their rows.
    pub fn snapshot(&mut self, i: usize) -> R<Vec<MailboxState>> {
        let mut out = Vec::new();
        for s in self.status(i)? {
            let rows = self
                .rows(i, &s.name)?
                .into_iter()
                .map(|(u, r)| format!("{u} {:?} {} ({})", r.guid, r.blob, flag_names(&r.flags)))
                .collect();
            out.push(MailboxState {
                name: s.name,
                id: s.id,
                uidvalidity: s.uidvalidity,
                uidnext: s.uidnext,
                messages: s.messages,
                unseen: s.unseen,
                digest: s.digest,
                rows,
            });
        }
        Ok(out)
    }

    /// Invariants 1 and 5 once quiescent.
    pub fn check_converged(&mut self) -> R<()> {
        let first = self.snapshot(0)?;
        for i in 1..self.k() {
            let other = self.snapshot(i)?;
            if other != first {
                return Err(format!(
                    "inv 1: node 0 and node {i} differ:\n{first:#?}\nvs\n{other:#?}"
                ));
            }
        }
        let labels: Vec<String> = (0..self.k()).map(|i| format!("node{i}")).collect();
        let d = dovetail::diff::diff(&mut self.nodes, &labels).map_err(err)?;
        if !d.is_empty() {
            let d: Vec<String> = d.iter().map(|x| x.to_string()).collect();
            return Err(format!("inv 1: diff reports {}", d.join("; ")));
        }
        for i in 0..self.k() {
            let mut pending = 0;
            self.nodes[i]
                .kv()
                .scan(b"P", &mut |_, _| {
                    pending += 1;
                    true
                })
                .map_err(|e| e.to_string())?;
            if pending > 0 {
                return Err(format!("node {i}: {pending} changes never applied"));
            }
        }
        // Invariant 5: every accepted, not expunged GUID is shown exactly once, in its
        // mailbox; nothing else is shown.
        let mut shown: BTreeMap<Guid, (String, usize)> = BTreeMap::new();
        for MailboxState { id, .. } in &first {
            let mb = MailboxId::try_from(id.as_str()).map_err(|e| e.to_string())?;
            let meta = Tx::new(self.nodes[0].kv())
                .mailbox_meta(&mb)
                .map_err(|e| e.to_string())?;
            if let Some(m) = meta.filter(|m| !m.homeless.is_empty()) {
                return Err(format!(
                    "mailbox {id}: homeless at quiescence: {:?}",
                    m.homeless
                ));
            }
            for (_, row) in tables::rows(self.nodes[0].kv(), &mb).map_err(|e| e.to_string())? {
                shown.entry(row.guid).or_insert((id.clone(), 0)).1 += 1;
            }
        }
        for (g, id) in &self.accepted {
            let want = usize::from(!self.expunged.contains(g));
            let got = shown
                .get(g)
                .filter(|(sid, _)| sid == id)
                .map_or(0, |(_, n)| *n);
            if got != want {
                return Err(format!(
                    "inv 5: {g:?} (mailbox {id}, expunged {}) shown {got} times",
                    want == 0
                ));
            }
        }
        if let Some(g) = shown.keys().find(|g| !self.accepted.contains_key(g)) {
            return Err(format!("inv 5: {g:?} shown but never accepted"));
        }
        Ok(())
    }
}
