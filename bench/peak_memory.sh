#!/usr/bin/env bash
# Peak memory of a command and everything it starts (JVMs, the Kafka broker, Flink workers):
# samples every 0.5 s the summed RSS of all processes whose environment carries a marker variable.
# Usage: bench/peak_memory.sh COMMAND [ARGS...]   → prints JSON {"seconds", "peak_rss_mib", "exit_code"}
set -u
marker="ICETIDE_MEM_PROBE=$$-$RANDOM"
export "${marker?}"
start=$(date +%s.%N)
"$@" > /tmp/peak_memory.out 2>&1 &
child=$!
peak=0
while kill -0 "$child" 2>/dev/null; do
  total=0
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}; pid=${pid%/environ}
    if { tr "\0" "\n" < "$env"; } 2>/dev/null | grep -qx "$marker"; then
      rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null)
      total=$((total + ${rss:-0}))
    fi
  done
  [ "$total" -gt "$peak" ] && peak=$total
  sleep 0.5
done
wait "$child"; rc=$?
end=$(date +%s.%N)
printf '{"command": "%s", "seconds": %.1f, "peak_rss_mib": %d, "exit_code": %d}\n' "$*" "$(echo "$end - $start" | bc)" $((peak / 1024)) "$rc"
