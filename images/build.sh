#!/usr/bin/env bash
# Builds the guest programs statically into images/out/ (idempotent: rebuilds only what changed).
#   out/glibc/NAME      gcc -static -no-pie       (glibc, non-PIE, linked at 0x400000)
#   out/glibc-pie/NAME  gcc -static-pie           (glibc, static PIE)
#   out/musl/NAME       musl-gcc -static          (musl)
#   out/rust/NAME       rustc, gnu target, +crt-static
#   out/data/           the files the "files" program reads (out/ is the default rootfs)
# Needs gcc, musl-tools and rustc; scripts/setup installs the first two.
set -euo pipefail
cd "$(dirname "$0")"
OUT=out
mkdir -p "$OUT"/glibc "$OUT"/glibc-pie "$OUT"/musl "$OUT"/rust
CFLAGS=(-O2 -g0 -Wall -Wno-unused-result -fno-strict-aliasing)

# build OUTPUT SOURCE COMPILER ARGS...: skips the build when the output is newer than the source and this script.
# The source goes right after the compiler, so that libraries in ARGS (-lm) come after it on the link line.
build() {
    local out=$1 src=$2 cc=$3
    shift 3
    if [[ -e $out && $out -nt $src && $out -nt build.sh ]]; then return 0; fi
    echo "  build $out"
    "$cc" "$src" "$@" -o "$out.tmp"
    mv "$out.tmp" "$out"
}

ALL=(hello threads malloc files fp abort segv divzero illegal matmul getpid outloop efault wait fuzz signals sigthread robust
     demo lockinc peterson falseshare pagewatch threadstart sigremote sharenothing fig7 prodcons layoutrace)
PORTABLE=(hello threads malloc files fp abort segv divzero illegal efault fuzz signals sigthread
          demo lockinc peterson falseshare pagewatch threadstart sigremote sharenothing)

for p in "${ALL[@]}"; do
    build "$OUT/glibc/$p" "src/$p.c" gcc "${CFLAGS[@]}" -static -no-pie -pthread -lm
done
build "$OUT/glibc/trivial" src/trivial.c gcc -O2 -static -nostdlib -no-pie
# OpenMP programs; npb_* are NAS Parallel Benchmarks kernels (usage: npb_XX [S|W]).
for p in omp omp4 npb_is npb_cg npb_ft npb_ep npb_mg; do
    build "$OUT/glibc/$p" "src/$p.c" gcc "${CFLAGS[@]}" -static -no-pie -fopenmp -lm
done
for p in "${PORTABLE[@]}"; do
    build "$OUT/glibc-pie/$p" "src/$p.c" gcc "${CFLAGS[@]}" -static-pie -fPIE -pthread -lm
done
if command -v musl-gcc >/dev/null 2>&1; then
    for p in "${PORTABLE[@]}"; do
        build "$OUT/musl/$p" "src/$p.c" musl-gcc "${CFLAGS[@]}" -static -lm
    done
else
    echo "build.sh: musl-gcc missing (run scripts/setup): musl images skipped" >&2
fi
build "$OUT/rust/hello" src/rust_hello.rs rustc -O --edition 2021 \
    --target x86_64-unknown-linux-gnu -C target-feature=+crt-static

# Benchmarks of the multi-island layer (scripts/bench-islands).
build "$OUT/glibc/faultbench" src/faultbench.c gcc "${CFLAGS[@]}" -static -no-pie -pthread

# The root file system the "files" program reads (relative paths resolve against the rootfs).
rm -rf "$OUT/data"
cp -r rootfs/data "$OUT/data"
# A file that is not an ELF, for the loader's error path.
printf 'not an elf\n' > "$OUT/not-elf"
echo "images: built into $(pwd)/$OUT"
