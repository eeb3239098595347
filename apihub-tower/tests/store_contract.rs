//! The storage contract ([`apihub_tower::testkit`]) over the in-memory store.

use apihub_tower::memory::MemoryStore;
use apihub_tower::testkit::Subject;

async fn memory_store() -> Option<Subject> {
    Some(Subject::new(MemoryStore::new()))
}

apihub_tower::store_contract!(memory_store);
