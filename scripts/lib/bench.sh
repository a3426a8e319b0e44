# Helpers the benchmark scripts share (sourced, not run).
now_ns() { date +%s%N; }
# wall CMD...: runs CMD (output discarded), prints its wall time in ns.
wall() { local t0 t1; t0=$(now_ns); "$@" >/dev/null 2>&1; t1=$(now_ns); echo $((t1 - t0)); }
# The median of the numbers on stdin, one per line (the upper one of an even count).
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t) ? "met" : "MISSED"}'; }
