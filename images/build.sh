#!/usr/bin/env bash
# Builds the guest programs statically into images/out/ (idempotent: rebuilds only what changed).
#   out/glibc/NAME      gcc -static -no-pie       (glibc, non-PIE, linked at 0x400000)
#   out/glibc-pie/NAME  gcc -static-pie           (glibc, static PIE)
#   out/musl/NAME       musl-gcc -static          (musl)
#   out/rust/NAME       rustc, gnu target, +crt-static
#   out/data/           the files the "files" program reads (out/ is the default rootfs)
#   out/lib/, out/include/  libpopcorn (guest-agent/), see "Thread migration" below
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
     demo lockinc peterson falseshare pagewatch threadstart sigremote sharenothing fig7 prodcons
     migratee sigfpu regress difftest procview stubcall wakeping layoutrace seqread timecalls tscprobe)
PORTABLE=(hello threads malloc files fp abort segv divzero illegal efault fuzz signals sigthread
          demo lockinc peterson falseshare pagewatch threadstart sigremote sharenothing difftest timecalls)

for p in "${ALL[@]}"; do
    build "$OUT/glibc/$p" "src/$p.c" gcc "${CFLAGS[@]}" -static -no-pie -pthread -lm
done
build "$OUT/glibc/trivial" src/trivial.c gcc -O2 -static -nostdlib -no-pie
# OpenMP programs; npb_* are NAS Parallel Benchmarks kernels (usage: npb_XX [S|W]); sp_like has
# the barrier structure of NPB SP (usage: sp_like [S|W]).
for p in omp omp4 npb_is npb_cg npb_ft npb_ep npb_mg sp_like; do
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

# Thread migration (guest-agent/): libpopcorn, popcorn-migrate and the migration test programs.
#   out/include/popcorn.h                 the header
#   out/lib/{glibc,musl}/libpopcorn.a     Popcorn's calls at popvmm's numbers (900-903)
#   out/lib/{glibc,musl}/libpopcorn44.a   the same at Popcorn 4.4's (330-333): --popcorn-abi 4.4
# The glibc objects are position independent, so they link into -no-pie and -static-pie programs.
GA=../guest-agent
mkdir -p "$OUT"/include "$OUT"/lib/glibc "$OUT"/lib/musl
LIBPOPCORN=("$GA"/libpopcorn/popcorn.c "$GA"/libpopcorn/migrate_x86_64.S "$GA"/libpopcorn/popcorn.h)

# stale OUTPUT DEPENDENCY...: whether OUTPUT is missing or older than a dependency or this script.
stale() {
    local out=$1 dep
    shift
    [[ -e $out && $out -nt build.sh ]] || return 0
    for dep in "$@"; do [[ $out -nt $dep ]] || return 0; done
    return 1
}

# build_lib OUTPUT COMPILER FLAGS...: libpopcorn as a static library.
build_lib() {
    local out=$1 cc=$2
    shift 2
    stale "$out" "${LIBPOPCORN[@]}" || return 0
    echo "  build $out"
    local tmp
    tmp=$(mktemp -d)
    "$cc" "${CFLAGS[@]}" -fPIE "$@" -c "$GA"/libpopcorn/popcorn.c -o "$tmp"/popcorn.o
    "$cc" -fPIE "$@" -c "$GA"/libpopcorn/migrate_x86_64.S -o "$tmp"/migrate_x86_64.o
    rm -f "$out.tmp"
    ar rcs "$out.tmp" "$tmp"/popcorn.o "$tmp"/migrate_x86_64.o
    rm -rf "$tmp"
    mv "$out.tmp" "$out"
}

# build_with OUTPUT "DEPENDENCIES" SOURCE COMPILER ARGS...: like build, also rebuilt when a
# dependency (library, header) changed.
build_with() {
    local out=$1 deps=$2
    shift 2
    # shellcheck disable=SC2086 # the dependencies are a list of paths without spaces
    if stale "$out" "$1" $deps; then rm -f "$out"; fi
    build "$out" "$@"
}

# (Copied only when it changed: the programs below are rebuilt when it is newer than them.)
if ! cmp -s "$GA"/libpopcorn/popcorn.h "$OUT"/include/popcorn.h; then
    cp "$GA"/libpopcorn/popcorn.h "$OUT"/include/popcorn.h
fi
build_lib "$OUT"/lib/glibc/libpopcorn.a gcc
build_lib "$OUT"/lib/glibc/libpopcorn44.a gcc -DPOPCORN_ABI_4_4
MIG_INC=(-I"$OUT"/include -I"$GA"/popcorn-migrate)
MIG_DEPS="$OUT/include/popcorn.h $GA/popcorn-migrate/probes.h"
GLIBC_LIB="$OUT/lib/glibc/libpopcorn.a"
for p in popcorn-migrate migtest; do
    src=src/$p.c
    [[ $p == popcorn-migrate ]] && src=$GA/popcorn-migrate/popcorn-migrate.c
    build_with "$OUT/glibc/$p" "$MIG_DEPS $GLIBC_LIB" "$src" gcc "${CFLAGS[@]}" "${MIG_INC[@]}" \
        -static -no-pie -pthread "$GLIBC_LIB" -lm
    build_with "$OUT/glibc-pie/$p" "$MIG_DEPS $GLIBC_LIB" "$src" gcc "${CFLAGS[@]}" "${MIG_INC[@]}" \
        -static-pie -fPIE -pthread "$GLIBC_LIB" -lm
done
# The helper with Popcorn 4.4's numbers (run it with popvmm launch --popcorn-abi 4.4).
build_with "$OUT/glibc/popcorn-migrate-4.4" "$MIG_DEPS $OUT/lib/glibc/libpopcorn44.a" \
    "$GA"/popcorn-migrate/popcorn-migrate.c gcc "${CFLAGS[@]}" "${MIG_INC[@]}" -static -no-pie \
    -pthread "$OUT"/lib/glibc/libpopcorn44.a -lm
if command -v musl-gcc >/dev/null 2>&1; then
    build_lib "$OUT"/lib/musl/libpopcorn.a musl-gcc
    build_lib "$OUT"/lib/musl/libpopcorn44.a musl-gcc -DPOPCORN_ABI_4_4
    MUSL_LIB="$OUT/lib/musl/libpopcorn.a"
    build_with "$OUT/musl/popcorn-migrate" "$MIG_DEPS $MUSL_LIB" "$GA"/popcorn-migrate/popcorn-migrate.c \
        musl-gcc "${CFLAGS[@]}" "${MIG_INC[@]}" -static "$MUSL_LIB" -lm
    build_with "$OUT/musl/migtest" "$MIG_DEPS $MUSL_LIB" src/migtest.c \
        musl-gcc "${CFLAGS[@]}" "${MIG_INC[@]}" -static "$MUSL_LIB" -lm
fi
# An unmodified OpenMP program that reports where its threads run (OMP_PLACES binds them).
build "$OUT/glibc/ompplaces" src/ompplaces.c gcc "${CFLAGS[@]}" -static -no-pie -fopenmp -lm
# The Rust crate (guest-agent/popcorn) and a Rust guest program using it.
mkdir -p "$OUT"/lib/rust
if stale "$OUT"/lib/rust/libpopcorn.rlib "$GA"/popcorn/src/lib.rs; then
    echo "  build $OUT/lib/rust/libpopcorn.rlib"
    rustc -O --edition 2021 --crate-type rlib --crate-name popcorn \
        --target x86_64-unknown-linux-gnu -C target-feature=+crt-static \
        "$GA"/popcorn/src/lib.rs -o "$OUT"/lib/rust/libpopcorn.rlib
fi
build_with "$OUT/rust/migrate" "$OUT/lib/rust/libpopcorn.rlib" src/rust_migrate.rs rustc -O \
    --edition 2021 --target x86_64-unknown-linux-gnu -C target-feature=+crt-static \
    --extern popcorn="$OUT"/lib/rust/libpopcorn.rlib

# The root file system the "files" program reads (relative paths resolve against the rootfs).
# data/tree holds symlinks (relative, absolute, a loop, a dangling one): cp -r copies them as links.
rm -rf "$OUT/data"
cp -r rootfs/data "$OUT/data"
# A file of 2.6 MB whose every position differs from its neighbours' (regress readv).
seq 1 400000 > "$OUT/data/big.txt"
# A file that is not an ELF, for the loader's error path.
printf 'not an elf\n' > "$OUT/not-elf"
chmod +x "$OUT/not-elf" # executable, so that the loader's format check is what refuses it
echo "images: built into $(pwd)/$OUT"
