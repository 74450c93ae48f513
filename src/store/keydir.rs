//! The in-memory index of message bodies (a "keydir", as Bitcask calls it): body id →
//! where its bytes are in the pack files, and the record format of its durable form, one
//! append-only index file per pack ([`super::blobs`]).
//!
//! Ids are sha256 digests, uniformly distributed, so the map is keyed by the first 8 bytes
//! of the id and hashes nothing: ~20 bytes per body in memory ([`PrefixTable`]: sorted
//! arrays, without a hash table's power-of-two slack) instead of a B-tree insert per body in
//! sled. Two bodies whose ids share 8 bytes (about one chance in 10^7 for a million
//! bodies) are told apart by reading the id stored in front of the occupant's bytes; the
//! later one goes into a small map keyed by the whole id.

use super::packs::Loc;
use super::prefix_table::{PrefixTable, Tombstone};
use super::StoreError;
use std::collections::HashMap;

/// A location, compact: pack files end before 4 GiB (`PACK_LIMIT` is 1 GiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    pack: u32,
    offset: u32,
    len: u32,
}

impl Slot {
    fn of(loc: Loc) -> Slot {
        Slot {
            pack: loc.pack,
            offset: u32::try_from(loc.offset).expect("pack offsets fit 32 bits"),
            len: loc.len,
        }
    }

    fn loc(self) -> Loc {
        Loc {
            pack: self.pack,
            offset: u64::from(self.offset),
            len: self.len,
        }
    }
}

fn prefix(id: &[u8; 32]) -> u64 {
    u64::from_be_bytes(id[..8].try_into().expect("8 bytes"))
}

/// Reads the id stored in front of a body's bytes (`None`: unreadable).
pub type IdAt<'a> = &'a dyn Fn(Loc) -> Result<Option<[u8; 32]>, StoreError>;

impl Tombstone for Slot {
    const DEAD: Slot = Slot {
        pack: u32::MAX,
        offset: 0,
        len: 0,
    };
    fn is_dead(&self) -> bool {
        self.pack == u32::MAX
    }
}

/// Body id → location.
#[derive(Default)]
pub struct Keydir {
    by_prefix: PrefixTable<Slot>,
    overflow: HashMap<[u8; 32], Slot>,
}

impl Keydir {
    /// An empty keydir with room for `n` bodies.
    pub fn with_capacity(n: usize) -> Keydir {
        Keydir {
            by_prefix: PrefixTable::with_capacity(n),
            overflow: HashMap::new(),
        }
    }

    /// Where `id` may be: the caller checks the bytes it reads against the id (a read
    /// does: a body read is hashed), as the occupant of a shared prefix is returned
    /// unchecked.
    pub fn candidate(&self, id: &[u8; 32]) -> Option<Loc> {
        if let Some(s) = self.overflow.get(id) {
            return Some(s.loc());
        }
        self.by_prefix.get(prefix(id)).map(|s| s.loc())
    }

    /// Where `id` is, checked.
    pub fn get(&self, id: &[u8; 32], id_at: IdAt) -> Result<Option<Loc>, StoreError> {
        if let Some(s) = self.overflow.get(id) {
            return Ok(Some(s.loc()));
        }
        match self.by_prefix.get(prefix(id)) {
            Some(s) if id_at(s.loc())?.as_ref() == Some(id) => Ok(Some(s.loc())),
            _ => Ok(None),
        }
    }

    /// Whether `id` is at exactly `loc` (the record at `loc` carries `id`).
    pub fn is_at(&self, id: &[u8; 32], loc: Loc) -> bool {
        let at = Slot::of(loc);
        self.overflow.get(id) == Some(&at) || self.by_prefix.get(prefix(id)) == Some(at)
    }

    /// Records that `id` is at `loc` (replacing where it was).
    pub fn insert(&mut self, id: &[u8; 32], loc: Loc, id_at: IdAt) -> Result<(), StoreError> {
        let slot = Slot::of(loc);
        if let Some(s) = self.overflow.get_mut(id) {
            *s = slot;
            return Ok(());
        }
        match self.by_prefix.get(prefix(id)) {
            None => {
                self.by_prefix.insert(prefix(id), slot);
            }
            Some(s) => match id_at(s.loc())? {
                // The same body, or an occupant that cannot be read any more.
                Some(other) if &other != id => {
                    self.overflow.insert(*id, slot);
                }
                _ => {
                    self.by_prefix.insert(prefix(id), slot);
                }
            },
        }
        Ok(())
    }

    /// Forgets `id` if it is in pack `pack` (a tombstone of that pack's index).
    pub fn remove_in(&mut self, id: &[u8; 32], pack: u32, id_at: IdAt) -> Result<(), StoreError> {
        if let Some(s) = self.overflow.get(id) {
            if s.pack == pack {
                self.overflow.remove(id);
            }
            return Ok(());
        }
        let p = prefix(id);
        if let Some(s) = self.by_prefix.get(p) {
            if s.pack == pack && id_at(s.loc())?.as_ref() == Some(id) {
                self.by_prefix.remove(p);
            }
        }
        Ok(())
    }

    /// Forgets `id`, known to be at `loc`.
    pub fn remove_at(&mut self, id: &[u8; 32], loc: Loc) {
        let at = Slot::of(loc);
        if self.overflow.get(id) == Some(&at) {
            self.overflow.remove(id);
        } else if self.by_prefix.get(prefix(id)) == Some(at) {
            self.by_prefix.remove(prefix(id));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_prefix.len() + self.overflow.len()
    }
}

/// What an index record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rec {
    /// A body with this id is at this location.
    Body([u8; 32], Loc),
    /// The body with this id in this pack is dropped (garbage-collected).
    Dead([u8; 32]),
}

/// Bytes of an index record: kind, id, offset, length, check.
pub const REC: usize = 1 + 32 + 8 + 4 + 4;

/// FNV-1a: a record whose check does not match was torn by a crash.
fn check(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, x| {
        (h ^ u32::from(*x)).wrapping_mul(0x0100_0193)
    })
}

impl Rec {
    pub fn encode(&self, pack_of_dead: u32) -> [u8; REC] {
        let mut b = [0u8; REC];
        let (kind, id, loc) = match self {
            Rec::Body(id, loc) => (1, id, *loc),
            Rec::Dead(id) => (
                2,
                id,
                Loc {
                    pack: pack_of_dead,
                    offset: 0,
                    len: 0,
                },
            ),
        };
        b[0] = kind;
        b[1..33].copy_from_slice(id);
        b[33..41].copy_from_slice(&loc.offset.to_be_bytes());
        b[41..45].copy_from_slice(&loc.len.to_be_bytes());
        let c = check(&b[..45]);
        b[45..].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// Decodes a record of pack `pack`'s index; `None` if it is torn or unknown.
    pub fn decode(b: &[u8], pack: u32) -> Option<Rec> {
        let b: &[u8; REC] = b.try_into().ok()?;
        if check(&b[..45]).to_be_bytes() != b[45..] {
            return None;
        }
        let id: [u8; 32] = b[1..33].try_into().ok()?;
        match b[0] {
            1 => Some(Rec::Body(
                id,
                Loc {
                    pack,
                    offset: u64::from_be_bytes(b[33..41].try_into().ok()?),
                    len: u32::from_be_bytes(b[41..45].try_into().ok()?),
                },
            )),
            2 => Some(Rec::Dead(id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn loc(pack: u32, offset: u64) -> Loc {
        Loc {
            pack,
            offset,
            len: 10,
        }
    }

    /// Two ids sharing their first 8 bytes are both found, each at its own place.
    #[test]
    fn ids_sharing_a_prefix_are_told_apart() {
        let a = [7u8; 32];
        let mut b = [7u8; 32];
        b[31] = 8;
        let stored: HashMap<Loc, [u8; 32]> = [(loc(0, 36), a), (loc(0, 82), b)].into();
        let id_at = |l: Loc| Ok(stored.get(&l).copied());
        let mut k = Keydir::default();
        k.insert(&a, loc(0, 36), &id_at).expect("a");
        k.insert(&b, loc(0, 82), &id_at).expect("b");
        assert_eq!(k.len(), 2);
        assert_eq!(k.get(&a, &id_at).expect("a"), Some(loc(0, 36)));
        assert_eq!(k.get(&b, &id_at).expect("b"), Some(loc(0, 82)));
        let mut c = [7u8; 32];
        c[20] = 1;
        assert_eq!(k.get(&c, &id_at).expect("c"), None);
        k.remove_in(&a, 0, &id_at).expect("remove");
        assert_eq!(k.get(&a, &id_at).expect("a"), None);
        assert_eq!(k.get(&b, &id_at).expect("b"), Some(loc(0, 82)));
        // Another pack's tombstone leaves it.
        k.remove_in(&b, 3, &id_at).expect("remove");
        assert!(k.is_at(&b, loc(0, 82)));
    }

    /// Records read back as written; a torn one (any byte changed) reads as nothing.
    #[test]
    fn records_round_trip_and_torn_ones_are_refused() {
        let r = Rec::Body([3; 32], loc(5, 1234));
        let b = r.encode(5);
        assert_eq!(Rec::decode(&b, 5), Some(r));
        let d = Rec::Dead([4; 32]);
        assert_eq!(Rec::decode(&d.encode(5), 5), Some(d));
        for i in 0..REC {
            let mut t = b;
            t[i] ^= 0x40;
            assert_eq!(Rec::decode(&t, 5), None, "byte {i}");
        }
        assert_eq!(Rec::decode(&[0u8; REC], 5), None);
    }
}
