//! Restarts in the middle of a sync, by hand: a node that crashes after storing received
//! changes but before their blobs are durable asks for those blobs again when it comes
//! back, and a node that restarts with sync messages queued to and from it loses them and
//! still converges.

use super::sim::*;

#[test]
fn crash_between_changes_and_their_blobs_heals() {
    let mut sim = Sim::new(2, 31).unwrap_or_else(|e| panic!("{e}"));
    let run = |sim: &mut Sim| -> R<()> {
        sim.append(0, "INBOX", &[(1, 0), (3, 1), (5, 0)])?;
        // Node 1 stores node 0's changes; their blobs have not arrived.
        for d in sim.docs_of(0, 1)? {
            sim.pump(0, 1, &d)?;
        }
        sim.check()?;
        let wanted: Vec<_> = sim.missing[1].iter().copied().collect();
        if wanted.len() != 3 || !sim.rows(1, "INBOX")?.is_empty() {
            return Err(format!("node 1 should wait for 3 blobs, wants {wanted:?}"));
        }
        // One blob arrives but the node crashes before anything flushes it.
        let bytes = sim.nodes[0].blob(&wanted[0]).map_err(err)?.expect("blob");
        sim.nodes[1].put_blob(&wanted[0], &bytes).map_err(err)?;
        if sim.kvs[1].unflushed() == 0 {
            return Err("the blob should not be durable before a flush".into());
        }
        sim.crash_restart(1, 0)?;
        if sim.stats.crash_drops != 1 || sim.nodes[1].blob(&wanted[0]).map_err(err)?.is_some() {
            return Err("the crash should have lost the unflushed blob".into());
        }
        // Coming back, the node asks again for every blob its stored changes wait for.
        let again: Vec<_> = sim.missing[1].iter().copied().collect();
        if again.len() != 3 {
            return Err(format!("after the crash node 1 asks for {again:?}"));
        }
        sim.blobs(1)?;
        sim.check()?;
        if sim.rows(1, "INBOX")?.len() != 3 {
            return Err("node 1 does not show the messages once the blobs are in".into());
        }
        sim.quiesce()?;
        sim.check_converged()
    };
    if let Err(e) = run(&mut sim) {
        panic!("{}", sim.report(&e));
    }
}

#[test]
fn restart_with_messages_queued_both_ways_converges() {
    let mut sim = Sim::new(3, 32).unwrap_or_else(|e| panic!("{e}"));
    let run = |sim: &mut Sim| -> R<()> {
        sim.append(0, "INBOX", &[(1, 0), (3, 0)])?;
        sim.append(1, "INBOX", &[(5, 0)])?;
        for (a, b) in [(0, 1), (1, 0), (2, 1), (1, 2)] {
            for d in sim.docs_of(a, b)? {
                sim.generate(a, b, &d)?;
            }
        }
        // Deliver half of what node 1 is sent, then it restarts with the rest in flight.
        if let Some(key) = sim.queues.keys().find(|k| k.1 == 1).cloned() {
            sim.flush_queue(key.0, key.1, &key.2)?;
        }
        let in_flight = sim.queues.keys().any(|k| k.0 == 1 || k.1 == 1);
        sim.crash_restart(1, 0)?;
        if !in_flight || sim.stats.mid_sync_restarts != 1 {
            return Err("the restart should have come with messages in flight".into());
        }
        if sim.queues.keys().any(|k| k.0 == 1 || k.1 == 1) {
            return Err("messages to and from a restarted node must be gone".into());
        }
        sim.check()?;
        sim.quiesce()?;
        sim.check_converged()?;
        if sim.rows(2, "INBOX")?.len() != 3 {
            return Err("node 2 should show all three messages".into());
        }
        Ok(())
    };
    if let Err(e) = run(&mut sim) {
        panic!("{}", sim.report(&e));
    }
}
