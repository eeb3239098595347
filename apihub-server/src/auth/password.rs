//! Password hashing: argon2id at the OWASP minimum (19 MiB, 2 iterations, 1 lane), run by a small
//! bounded pool so that a flood of logins or registrations can neither take all the memory
//! (each hash allocates 19 MiB) nor queue without end.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// argon2id at exactly the OWASP minimum: m = 19 MiB, t = 2, p = 1 (`Params::DEFAULT`).
fn params() -> Params {
    Params::DEFAULT
}

/// The working memory of one hash: `Params::DEFAULT` needs 19,456 blocks of 1 KiB.
type Memory = Vec<Block>;

fn memory_for(params: &Params, memory: &mut Memory) -> anyhow::Result<()> {
    let blocks = params.block_count();
    // Our own hashes use 19 MiB; a stored hash asking for more than 256 MiB is not one of ours.
    anyhow::ensure!(blocks <= 256 * 1024, "a password hash asks for {blocks} KiB of memory");
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    Ok(())
}

/// Computes the argon2 output of `password` with the given salt and settings into `memory`.
fn compute<'a>(
    password: &str,
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'a>,
    memory: &mut Memory,
) -> anyhow::Result<PasswordHash<'a>> {
    memory_for(&params, memory)?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = params.block_count();
    let hasher = Argon2::new(algorithm, version, params.clone());
    let output = Output::init_with(output_len, |out| {
        hasher
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut memory[..blocks])
            .map_err(|_| password_hash::Error::Password)
    })
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(salt),
        hash: Some(output),
    })
}

/// Hashes a password into a PHC string, using `memory` as argon2's working memory.
fn hash_in(password: &str, memory: &mut Memory) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(compute(password, Algorithm::Argon2id, Version::V0x13, params(), salt.as_salt(), memory)?.to_string())
}

/// Checks a password against a stored PHC string; a malformed hash never verifies.
fn verify_in(password: &str, stored: &str, memory: &mut Memory) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    // `Output`'s comparison takes constant time.
    compute(password, algorithm, version, params, salt, memory).is_ok_and(|computed| computed.hash == Some(expected))
}

/// Hashes a password into a PHC string. CPU- and memory-heavy: call through a [`PasswordPool`].
pub fn hash(password: &str) -> anyhow::Result<String> {
    hash_in(password, &mut Memory::new())
}

/// Checks a password against a stored PHC string; a malformed hash never verifies.
pub fn verify(password: &str, stored: &str) -> bool {
    verify_in(password, stored, &mut Memory::new())
}

/// A throwaway hash to verify against, so that a login for an unknown user costs what a wrong
/// password costs and does not reveal which usernames exist.
fn decoy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("not a real password, only a timing decoy").unwrap_or_default())
}

/// Runs [`hash`] on tokio's blocking pool: for start-up and the command line, not for requests.
pub async fn hash_blocking(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash(&password)).await?
}

/// The pool is full: as many hashes are running and waiting as it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct Busy;

/// A job gets its worker's argon2 memory, allocated once per thread and reused.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A fixed set of threads that hash and verify passwords, with a short queue in front.
///
/// Memory stays bounded by `workers × 19 MiB`: each thread owns its argon2 working memory and
/// reuses it for every hash (left to the allocator, 19 MiB blocks freed by one thread and asked
/// for by the next land in different arenas, and a flood grew the process by hundreds of MB).
/// A caller beyond `workers + queue` is refused at once with [`Busy`] instead of waiting: the
/// route answers 429 with `Retry-After`. The threads run at a lower priority than the ones
/// serving requests, so a flood of logins cannot slow down the proxy or the probes.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: SyncSender<Job>,
    admission: Arc<Semaphore>,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool").field("free", &self.admission.available_permits()).finish_non_exhaustive()
    }
}

/// A place in the pool, taken before any other work for the request (looking the user up), so
/// that a refused caller costs nothing.
#[derive(Debug)]
pub struct Admitted {
    pool: PasswordPool,
    _place: OwnedSemaphorePermit,
}

impl PasswordPool {
    /// Starts `workers` threads (at least one) behind a queue of `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, receiver) = sync_channel::<Job>(workers + queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..workers {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new().name(format!("apihub-password-{n}")).spawn(move || {
                crate::priority::background();
                work(&receiver);
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "starting a password thread failed");
            }
        }
        PasswordPool { jobs, admission: Arc::new(Semaphore::new(workers + queue)) }
    }

    /// One thread per core (at most four) and a queue of eight per thread.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(4);
        Self::new(cores, 8 * cores)
    }

    /// Takes a place in the pool, or refuses when it is full.
    pub fn admit(&self) -> Result<Admitted, Busy> {
        let place = self.admission.clone().try_acquire_owned().map_err(|_| Busy)?;
        Ok(Admitted { pool: self.clone(), _place: place })
    }

    /// Hashes `password`.
    pub async fn hash(&self, password: String) -> Result<anyhow::Result<String>, Busy> {
        self.admit()?.hash(password).await
    }

    /// Verifies `password` against `stored` (see [`Admitted::verify`]).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.admit()?.verify(password, stored).await
    }
}

impl Admitted {
    async fn run<T: Send + 'static>(self, job: impl FnOnce(&mut Memory) -> T + Send + 'static) -> Result<T, Busy> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(job(memory));
        });
        // The channel holds as many jobs as there are places, so a held place always fits.
        self.pool.jobs.try_send(job).map_err(|_| Busy)?;
        answer.await.map_err(|_| Busy)
    }

    /// Hashes `password`.
    pub async fn hash(self, password: String) -> Result<anyhow::Result<String>, Busy> {
        self.run(move |memory| hash_in(&password, memory)).await
    }

    /// Verifies `password` against `stored`, or against a decoy when `stored` is `None` (an
    /// unknown user costs what a wrong password costs).
    pub async fn verify(self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move |memory| match stored {
            Some(stored) => verify_in(&password, &stored, memory),
            None => {
                let _ = verify_in(&password, decoy(), memory);
                false
            }
        })
        .await
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    let mut memory = Memory::new();
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let next = receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
        match next {
            Ok(job) => job(&mut memory),
            Err(_) => return, // every sender is gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse", &stored));
        assert!(!verify("wrong horse", &stored));
        assert!(!verify("correct horse", "not-a-phc-string"));
    }

    /// Hashes made by the argon2 crate's own `PasswordHasher` (as every stored hash was before
    /// the pool) verify here, and ours verify there.
    #[test]
    fn hashes_agree_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"tr0ub4dor", &salt).unwrap();
        assert!(verify("tr0ub4dor", &theirs.to_string()));
        assert!(!verify("tr0ub4dor!", &theirs.to_string()));
        let ours = hash("tr0ub4dor").unwrap();
        assert!(Argon2::default().verify_password(b"tr0ub4dor", &PasswordHash::new(&ours).unwrap()).is_ok());
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_instead_of_queueing() {
        let pool = PasswordPool::new(1, 1);
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        // One job occupies the worker, one fills the queue; the third is refused.
        let running = tokio::spawn(pool.admit().unwrap().run(move |_| blocked.recv().is_ok()));
        let queued = tokio::spawn(pool.admit().unwrap().run(|_| 2));
        assert!(pool.admit().is_err());
        assert_eq!(pool.verify("pw".into(), None).await, Err(Busy));
        release.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(2));
        assert_eq!(pool.admit().unwrap().run(|_| 4).await, Ok(4), "room again once the queue drained");
    }
}
