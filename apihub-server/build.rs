//! Embeds the built dashboard (`apihub-ui/dist`) in the binary, each compressible file also
//! gzipped ahead of time, so that the one `apihub` file serves it from any folder. Without a
//! build (`npm --prefix apihub-ui run build`), the binary serves the API alone, and says so here.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../apihub-ui/dist");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", dist.display());
    println!("cargo:rerun-if-changed={}", dist.join("index.html").display());
    println!("cargo:rerun-if-changed={}", dist.join("assets").display());

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
    } else {
        println!(
            "cargo:warning=apihub-ui/dist is not built: this binary will serve the API without its dashboard \
             (run `npm --prefix apihub-ui ci && npm --prefix apihub-ui run build`, then build again)"
        );
    }
    files.sort();

    let gz_dir = out.join("dashboard-gz");
    std::fs::create_dir_all(&gz_dir).expect("creating OUT_DIR/dashboard-gz");
    let mut source = String::from(
        "/// A file: its path, its bytes, and its bytes gzipped when that is worth it.\n\
         pub type Embedded = (&'static str, &'static [u8], Option<&'static [u8]>);\n\
         /// The embedded dashboard.\npub static FILES: &[Embedded] = &[\n",
    );
    for (n, (route, path)) in files.iter().enumerate() {
        let bytes = std::fs::read(path).expect("reading a dashboard file");
        let gz = compressible(route).then(|| gzip(&bytes)).filter(|gz| gz.len() < bytes.len() * 9 / 10).map(|gz| {
            let gz_path = gz_dir.join(format!("{n}.gz"));
            std::fs::write(&gz_path, gz).expect("writing a gzipped dashboard file");
            format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
        });
        let _ = writeln!(
            source,
            "    ({route:?}, include_bytes!({:?}), {}),",
            path.display().to_string(),
            gz.unwrap_or_else(|| "None".into())
        );
    }
    source.push_str("];\n");
    std::fs::write(out.join("dashboard.rs"), source).expect("writing OUT_DIR/dashboard.rs");
}

/// Every file under `dir`, as (`/path/from/dist`, file).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).expect("reading apihub-ui/dist").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let route = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            files.push((route, path));
        }
    }
}

fn compressible(route: &str) -> bool {
    [".html", ".js", ".css", ".svg", ".json", ".txt", ".map"].iter().any(|ext| route.ends_with(ext))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}
