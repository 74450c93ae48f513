//! Invariant 4 per mailbox name, the reproduction (issue 5 §1): two nodes share a
//! mailbox holding one message; node 0 deletes it and creates the name again (a new
//! mailbox, greater UIDVALIDITY) while node 1 appends to the old one. After a sync, node 0
//! must still show the name with the new, greater UIDVALIDITY, the old mailbox comes back
//! under another name holding the concurrent message, and nothing is lost.

use super::sim::*;

/// The names the issue tried: the outcome of today's "smallest id keeps the name" depends
/// on the hash of the name.
const TRIED: [&str; 6] = ["Lists", "Sent", "Junk", "Projects", "Notes", "Receipts"];

fn delete_and_recreate_racing_an_append(name: &str) -> R<()> {
    let mut sim = Sim::new(2, 21)?;
    sim.per_name = true;
    let run = |sim: &mut Sim| -> R<()> {
        for i in 0..2 {
            sim.nodes[i]
                .create_mailbox(&account(), &mailbox(name))
                .map_err(err)?;
            let id = sim
                .status(i)?
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("node {i} does not list {name}"))?
                .id;
            sim.given_names
                .entry(id)
                .or_default()
                .insert(name.to_string());
        }
        sim.append(0, name, &[(1, 0)])?;
        sim.sync(0, 1)?;
        let old = sim
            .status(0)?
            .into_iter()
            .find(|s| s.name == name)
            .expect("listed");
        sim.delete(0, name)?;
        let uv = sim.nodes[0]
            .create_mailbox(&account(), &mailbox(name))
            .map_err(err)?;
        let new_id = sim
            .status(0)?
            .into_iter()
            .find(|s| s.uidvalidity == uv.get())
            .expect("the new mailbox is listed")
            .id;
        sim.given_names
            .entry(new_id.clone())
            .or_default()
            .insert(name.to_string());
        if uv.get() <= old.uidvalidity {
            return Err(format!(
                "re-created {name} has UIDVALIDITY {uv}, not above the old {}",
                old.uidvalidity
            ));
        }
        let kept = sim.append(1, name, &[(3, 0)])?;
        sim.check()?;
        sim.sync(0, 1)?;
        sim.quiesce()?;
        sim.check_converged()?;
        for i in 0..2 {
            let st = sim.status(i)?;
            let now = st.iter().find(|s| s.name == name);
            if now.map(|s| &s.id) != Some(&new_id) {
                return Err(format!(
                    "node {i} lists {name} as {now:?}, not the new mailbox"
                ));
            }
            let restored = st
                .iter()
                .find(|s| s.id == old.id)
                .ok_or_else(|| format!("node {i} lost the old {name} and its message"))?;
            let rows = sim.rows(i, &restored.name)?;
            if rows.len() != 1 || rows[0].1.guid != kept[0] {
                return Err(format!("the restored {} holds {rows:?}", restored.name));
            }
        }
        Ok(())
    };
    run(&mut sim).map_err(|e| sim.report(&e))
}

#[test]
fn delete_and_recreate_racing_an_append_keeps_uidvalidity_per_name() {
    let failures: Vec<String> = TRIED
        .iter()
        .filter_map(|n| delete_and_recreate_racing_an_append(n).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} names fail:\n{}",
        failures.len(),
        TRIED.len(),
        failures.join("\n\n")
    );
}
