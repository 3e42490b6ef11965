//! The Lambda binary runs on the `provided.al2023` runtime: Amazon Linux 2023 ships glibc
//! 2.34, so the binary built here (Debian 12, glibc 2.36) must not need a newer symbol version,
//! and it must link nothing the runtime lacks.

use std::process::Command;

const AL2023_GLIBC: (u32, u32) = (2, 34);

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_spherecast-scaler-lambda")
}

#[test]
fn the_lambda_binary_needs_no_glibc_newer_than_amazon_linux_2023s() {
    let out = Command::new("objdump")
        .args(["-T", binary()])
        .output()
        .expect("objdump (binutils) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let versions: Vec<(u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .collect();
    assert!(
        !versions.is_empty(),
        "no GLIBC symbol versions found:\n{text}"
    );
    let newest = versions.iter().max().unwrap();
    assert!(
        *newest <= AL2023_GLIBC,
        "needs GLIBC_{}.{}, Amazon Linux 2023 has {}.{}",
        newest.0,
        newest.1,
        AL2023_GLIBC.0,
        AL2023_GLIBC.1
    );
}

#[test]
fn the_lambda_binary_links_only_the_c_runtime() {
    let out = Command::new("ldd")
        .arg(binary())
        .output()
        .expect("ldd runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let libraries: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !name.starts_with("linux-vdso") && !name.starts_with("/lib64/ld-linux"))
        .collect();
    for library in &libraries {
        assert!(
            ["libc.so.6", "libm.so.6", "libgcc_s.so.1"].contains(library),
            "the Lambda binary links {library}, which provided.al2023 may lack:\n{text}"
        );
    }
    assert!(libraries.contains(&"libc.so.6"), "{text}");
}
