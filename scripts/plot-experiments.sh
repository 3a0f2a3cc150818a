#!/usr/bin/env bash
# Draws the PNG plots of scripts/experiments.sh from the CSVs in DIR, with
# gnuplot (Debian's gnuplot-nox), and writes DIR/tables.md (markdown tables
# of the same numbers, with the savings and slowdowns in percent):
#   fig6-throughput.png  fig6-far-memory.png  fig7-scale.png
#   fig8-throughput.png  fig8-far-memory.png
#
#   scripts/plot-experiments.sh DIR
# shellcheck disable=SC2016  # awk expressions in single quotes
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_opt "$@"
dir=${1:?usage: plot-experiments.sh DIR}
command -v gnuplot >/dev/null || { echo "plot-experiments: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
where=$(awk -F, 'FNR == 2 { print $2; exit }' "$dir"/fig*.csv 2>/dev/null)
# series FILE OUT AWK-CONDITION XCOL YCOL: the rows of FILE matching the condition, "x y", sorted by x.
series() { awk -F, -v x="$4" -v y="$5" "NR > 1 && ($3) { print \$x, \$y }" "$1" | sort -g >"$tmp/$2"; }
common='set terminal pngcairo size 900,560 font "sans,11"; set grid; set key top left; set datafile missing "?"'

if [[ -s $dir/fig6.csv ]]; then
  f=$dir/fig6.csv
  series "$f" u3 '$3 == 3 && $4 == "unique"' 6 10
  series "$f" m3 '$3 == 3 && $4 == "multi"' 6 10
  series "$f" u1 '$3 == 1 && $4 == "unique"' 6 10
  series "$f" m1 '$3 == 1 && $4 == "multi"' 6 10
  series "$f" fu '$3 == 3 && $4 == "unique"' 6 11
  series "$f" fm '$3 == 3 && $4 == "multi"' 6 11
  series "$f" pu '$3 == 3 && $4 == "unique"' 6 12
  ws=$(awk -F, 'NR == 2 { print $7 }' "$f")
  gnuplot <<EOF
$common
set output "$dir/fig6-throughput.png"
set title "Fig. 6a: throughput, 3 processes sharing one memnode ($where)"
set xlabel "local memory (% of the working set)"; set ylabel "operations/s per process (log scale)"
set logscale y
plot "$tmp/u3" w lp lw 2 pt 7 t "Unique-Copy (Sharry), 3 sharing", \
     "$tmp/m3" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style), 3 sharing", \
     "$tmp/u1" w lp dt 2 pt 6 t "Unique-Copy, 1 alone", \
     "$tmp/m1" w lp dt 2 pt 4 t "Multi-Copy, 1 alone"
set output "$dir/fig6-far-memory.png"
set title "Fig. 6b: far memory used by 3 processes ($ws MiB working set each)"
set ylabel "far memory (MiB)"; set key top right; unset logscale y; set yrange [0:*]
plot "$tmp/fu" w lp lw 2 pt 7 t "Unique-Copy (Sharry), at the end", \
     "$tmp/pu" w lp dt 3 pt 6 t "Unique-Copy, peak while running", \
     "$tmp/fm" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style)", \
     3 * $ws * (1 - x / 100) w l dt 2 lc rgb "gray40" t "working set - local"
EOF
fi

if [[ -s $dir/fig7.csv ]]; then
  f=$dir/fig7.csv
  plots=()
  for mode in unique multi; do
    # shellcheck disable=SC2013  # the words are section counts
    for sec in $(awk -F, 'NR > 1 { print $5 }' "$f" | sort -un); do
      series "$f" "s-$mode-$sec" "\$4 == \"$mode\" && \$5 == $sec" 6 10
      [[ -s $tmp/s-$mode-$sec ]] || continue
      name="Unique-Copy (Sharry)" dt=1 plural=s
      [[ $mode == multi ]] && name="Multi-Copy (AIFM-style)" dt=2
      [[ $sec == 1 ]] && plural=
      plots+=("\"$tmp/s-$mode-$sec\" w lp lw 2 dt $dt t \"$name, $sec section$plural\"")
    done
  done
  local_mb=$(awk -F, 'NR == 2 { print $9 }' "$f")
  gnuplot <<EOF
$common
set output "$dir/fig7-scale.png"
set title "Fig. 7: throughput against the number of objects (3 processes, $local_mb MiB local each, $where)"
set xlabel "objects in the system (256 B each)"; set ylabel "operations/s (3 processes)"
set logscale x; set format x "10^{%T}"; set yrange [0:*]; set key top right
plot $(IFS=,; echo "${plots[*]}")
EOF
fi

if [[ -s $dir/fig8.csv ]]; then
  f=$dir/fig8.csv
  series "$f" u1 '$4 == "remote" && $5 == "unique" && $6 == 1' 7 10
  series "$f" u2 '$4 == "remote" && $5 == "unique" && $6 == 2' 7 10
  series "$f" m2 '$4 == "remote" && $5 == "multi" && $6 == 2' 7 10
  series "$f" fu1 '$4 == "remote" && $5 == "unique" && $6 == 1' 7 11
  series "$f" fu2 '$4 == "remote" && $5 == "unique" && $6 == 2' 7 11
  series "$f" fm2 '$4 == "remote" && $5 == "multi" && $6 == 2' 7 11
  loc=$(awk -F, '$4 == "local" { print $10 }' "$f")
  frame=$(awk -F, '$4 == "local" { print $9 }' "$f")
  gnuplot <<EOF
$common
set output "$dir/fig8-throughput.png"
set title "Fig. 8a: data-frame throughput, 3 processes ($where)"
set xlabel "local memory (% of the data frame)"; set ylabel "rows scanned/s (3 processes)"
set logscale y; set key bottom right
plot "$tmp/u1" w lp lw 2 pt 7 t "Sharry, Unique-Copy, 1 section", \
     "$tmp/u2" w lp lw 2 pt 9 t "Sharry, Unique-Copy, 2 sections", \
     "$tmp/m2" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style), 2 sections", \
     ${loc:-0} w l lw 2 dt 2 lc rgb "black" t "plain local memory"
set output "$dir/fig8-far-memory.png"
unset logscale y; set yrange [0:*]; set key top right
set title "Fig. 8b: far memory used by 3 processes ($frame MiB data frame each)"
set ylabel "far memory (MiB)"
plot "$tmp/fu1" w lp lw 2 pt 7 t "Unique-Copy, 1 section", \
     "$tmp/fu2" w lp lw 2 pt 9 t "Unique-Copy, 2 sections", \
     "$tmp/fm2" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style)", \
     3 * $frame * (1 - x / 100) w l dt 2 lc rgb "gray40" t "data - local"
EOF
fi
# ---------------------------------------------------------------- tables
{
if [[ -s $dir/fig6.csv ]]; then
  echo "### Fig. 6: sharing vs not sharing ($where)"
  echo
  echo "| local | Unique x3 ops/s | Multi x3 ops/s | slowdown | Unique far MiB | Multi far MiB | far saved | Unique alone ops/s | Multi alone ops/s | slowdown alone |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, 'NR > 1 { k = $6; p[k] = 1; t[k, $3, $4] = $9; f[k, $3, $4] = $11 }
    END { for (k in p) {
        printf "%s\t| %d %% | %.0f | %.0f | %.1f %% | %.1f | %.1f | %.1f %% | %.0f | %.0f | %.1f %% |\n", k, k, t[k,3,"unique"], t[k,3,"multi"],
          100 * (1 - t[k,3,"unique"] / t[k,3,"multi"]), f[k,3,"unique"], f[k,3,"multi"],
          (f[k,3,"multi"] > 0 ? 100 * (1 - f[k,3,"unique"] / f[k,3,"multi"]) : 0),
          t[k,1,"unique"], t[k,1,"multi"], 100 * (1 - t[k,1,"unique"] / t[k,1,"multi"]) } }' "$dir/fig6.csv" | sort -g | cut -f2-
  echo
fi
if [[ -s $dir/fig7.csv ]]; then
  echo "### Fig. 7: scale ($where)"
  echo
  echo "| objects | data MiB | Unique 1 section ops/s | Unique 2 sections | Multi 1 section | Multi 2 sections | Unique far MiB | Multi far MiB | load s (Unique, 2 sections) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, 'NR > 1 { k = $6; p[k] = 1; ws[k] = $8; t[k, $4, $5] = $10; f[k, $4] = $11; if ($4 == "unique" && $5 == 2) l[k] = $16 }
    END { for (k in p) {
        printf "%s\t| %d | %.1f | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f | %s |\n", k, k, ws[k], t[k,"unique",1], t[k,"unique",2],
          t[k,"multi",1], t[k,"multi",2], f[k,"unique"], f[k,"multi"], l[k] } }' "$dir/fig7.csv" | sort -g | cut -f2-
  echo
fi
if [[ -s $dir/fig8.csv ]]; then
  echo "### Fig. 8: data frame ($where)"
  echo
  echo "| local | Unique 1 section rows/s | Unique 2 sections | Multi-Copy | plain local | Unique (2) vs Multi | 2 vs 1 section | Unique far MiB | Multi far MiB | far saved |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, 'NR > 1 && $4 == "local" { loc = $10 }
    NR > 1 && $4 == "remote" { k = $7; p[k] = 1; t[k, $5, $6] = $10; f[k, $5, $6] = $11 }
    END { for (k in p) {
        printf "%s\t| %d %% | %.0f | %.0f | %.0f | %.0f | %+.1f %% | %+.1f %% | %.1f | %.1f | %.1f %% |\n", k, k, t[k,"unique",1], t[k,"unique",2],
          t[k,"multi",2], loc, 100 * (t[k,"unique",2] / t[k,"multi",2] - 1), 100 * (t[k,"unique",2] / t[k,"unique",1] - 1),
          f[k,"unique",2], f[k,"multi",2], (f[k,"multi",2] > 0 ? 100 * (1 - f[k,"unique",2] / f[k,"multi",2]) : 0) } }' "$dir/fig8.csv" | sort -g | cut -f2-
  echo
fi
} >"$dir/tables.md"
# shellcheck disable=SC2012  # file names this script chose
ls "$dir"/*.png "$dir/tables.md" 2>/dev/null | sed 's/^/plot-experiments: wrote /'
