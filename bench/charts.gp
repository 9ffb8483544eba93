# evstore-bench charts: run by evstore-bench after a full run as
#   gnuplot -e "dir='bench-results'" bench/charts.gp
# Reads the .dat files evstore-bench wrote into `dir` and writes SVGs there
# (-e "dir='...'; png=1" writes PNGs instead). A chart whose data file is
# missing (its scenario did not run) is skipped.

if (!exists("dir")) dir = "bench-results"
set macros
if (exists("png")) {
  tname = "pngcairo"; topts = "font 'sans,10'"; ext = ".png"
} else {
  tname = "svg"; topts = "dynamic font 'sans,11' background 'white'"; ext = ".svg"
}
set terminal @tname size 820,460 @topts
set datafile missing "?"
set key outside right top noenhanced
set grid ytics lc rgb "#dddddd"
set border 3
set tics nomirror
set format y "%.0s%c"

have(f) = system("test -s '".f."' && echo 1 || echo 0") + 0

# ---- durable appends beside the references ----------------------------------
f = dir."/append.dat"
if (have(f)) {
  set output dir."/append".ext
  set title "Durable appends (sync), 200-byte events: evstore beside its references" noenhanced
  set ylabel "events/s (log scale)"
  set xlabel "events per transaction (batch)"
  set logscale y
  set style data histograms
  set style histogram clustered gap 1
  set style fill solid 0.85 border -1
  set boxwidth 0.9
  set xtics nomirror
  plot f using 2:xtic(1) title "evstore", \
       '' using 3 title "raw LMDB occ-index", \
       '' using 4 title "SQLite WAL FULL", \
       '' using 5 title "PostgreSQL", \
       '' using 6 title "Redis AOF always"
  unset logscale y
  unset output

  set output dir."/append-modes".ext
  set title "Appends by durability mode, 200-byte events (evstore solid, raw LMDB hatched)" noenhanced
  set logscale y
  plot f using 2:xtic(1) title "evstore sync" lc rgb "#1f77b4", \
       '' using 3 title "raw sync" lc rgb "#1f77b4" fs pattern 4, \
       '' using 7 title "evstore nometasync" lc rgb "#2ca02c", \
       '' using 8 title "raw nometasync" lc rgb "#2ca02c" fs pattern 4, \
       '' using 9 title "evstore nosync" lc rgb "#d62728", \
       '' using 10 title "raw nosync" lc rgb "#d62728" fs pattern 4
  unset logscale y
  unset output
  set style data linespoints
}

# ---- group commit -------------------------------------------------------------
f = dir."/group.dat"
if (have(f)) {
  set output dir."/group-commit".ext
  set title "Concurrent single-event appends: threads (in-process) or clients (evstored over TCP, peers)" noenhanced
  set xlabel "threads / clients"
  set ylabel "events/s (log scale)"
  set logscale xy
  set xtics (1, 4, 16, 64, 256)
  plot f using 1:2 with linespoints lw 2 pt 7 title "evstore in-process, sync (group commit)", \
       '' using 1:3 with linespoints lw 1 pt 6 title "evstore in-process, nometasync", \
       '' using 1:4 with linespoints lw 1 pt 4 title "evstore in-process, nosync", \
       '' using 1:5 with points pt 9 ps 1.5 title "SQLite (peers)", \
       '' using 1:6 with points pt 5 ps 1.5 title "PostgreSQL (peers)", \
       '' using 1:7 with points pt 13 ps 1.5 title "Redis (peers)", \
       '' using 1:8 with points pt 3 ps 1.5 title "LMDB txn per append (peers)", \
       '' using 1:9 with linespoints lw 2 pt 11 dt 2 title "evstored over TCP, sync", \
       '' using 1:10 with linespoints lw 1 pt 10 dt 3 title "evstored over TCP, 16 in flight per client"
  unset logscale xy
  set xtics autofreq
  unset output
}

# ---- reads ---------------------------------------------------------------------
f = dir."/reads.dat"
if (have(f)) {
  set output dir."/reads".ext
  set title "Reads: evstore beside a raw LMDB cursor and SQLite" noenhanced
  set ylabel "events/s"
  set format y "%.1s%c"
  set yrange [0:*]
  set xlabel ""
  set style data histograms
  set style histogram clustered gap 1
  set style fill solid 0.85 border -1
  plot f using 2:xtic(1) title "evstore", \
       '' using 3 title "raw LMDB", \
       '' using 4 title "SQLite (peers)"
  set style data linespoints
  set format y "%.0s%c"
  set yrange [*:*]
  unset output
}

# ---- growth --------------------------------------------------------------------
f = dir."/growth.dat"
if (have(f)) {
  set terminal @tname size 900,680 @topts
  set output dir."/growth".ext
  set multiplot layout 2,2 title "As the store grows (1,000 streams, 200-byte events)" noenhanced
  set key inside top right
  set xlabel "events in the store"
  set format x "%.0s%c"
  set title "append rate" noenhanced
  set ylabel "events/s"
  set logscale y
  plot f using 1:2 with linespoints pt 7 title "bulk load, nosync (v7 ids)", \
       '' using 1:3 with linespoints pt 5 title "sync b100, random v4 ids", \
       '' using 1:10 with linespoints pt 9 title "sync b100, v7 ids"
  unset logscale y
  set title "one stream read (newest 1,000 events)" noenhanced
  set ylabel "latency per read, us"
  plot f using 1:4 with linespoints pt 7 title "p50", \
       '' using 1:5 with linespoints pt 5 title "p99"
  set title "$all scan" noenhanced
  set ylabel "events/s"
  set format y "%.1s%c"
  set yrange [0:*]
  plot f using 1:6 with linespoints pt 7 title "evs_read_all"
  set format y "%.0s%c"
  set yrange [*:*]
  set title "bytes per event" noenhanced
  set ylabel "bytes per event (log scale)"
  set logscale y
  set key inside bottom right
  set y2label "data.mdb, MB"
  set y2tics
  plot f using 1:7 with linespoints pt 7 title "file / events" axes x1y1, \
       '' using 1:9 with linespoints pt 9 title "written/durable event, v4 ids" axes x1y1, \
       '' using 1:11 with linespoints pt 6 title "written/durable event, v7 ids" axes x1y1, \
       '' using 1:8 with linespoints pt 5 title "file MB (right)" axes x1y2
  unset y2tics
  unset y2label
  unset logscale y
  unset multiplot
  set format x
  unset output
  set terminal @tname size 820,460 @topts
}

f = dir."/onestream.dat"
if (have(f)) {
  set output dir."/one-stream".ext
  set title "Append rate as one stream grows (batches of 100, nosync)" noenhanced
  set xlabel "events in the stream"
  set ylabel "events/s"
  set format x "%.0s%c"
  set key inside bottom right
  plot f using 1:2 with linespoints pt 7 lw 2 title "evstore"
  unset output
}
