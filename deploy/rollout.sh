#!/usr/bin/env bash
# rollout.sh — upgrade a fleet of mosnlite instances in waves.
#
#   rollout.sh [options] CONFIG...        (or: rollout.sh [options] -f LIST)
#
# Each CONFIG is the new config of one instance; its uds_dir names the
# running process it upgrades. Each instance is upgraded with
# `mosnlite start --daemon -c CONFIG`, which returns 0 only once the new
# process serves (the old one then drains and exits) and 1 with the reason
# otherwise (the old one serves on, untouched). Waves: first 1 instance,
# then 10% of the fleet, then the rest; the instances of a wave are upgraded
# in parallel and the next wave starts only when every one of them
# succeeded. At the first failure the rollout stops: the instances of later
# waves stay on the old version, still serving.
#
# Options:
#   --mosnlite BIN       the new binary (default: mosnlite on PATH)
#   --wait-timeout DUR   how long each upgrade may take (default 60s)
#   --first N            size of the first wave (default 1)
#   --percent P          size of the second wave, in % of the fleet, rounded up (default 10)
#   --max-parallel N     at most N upgrades at once within a wave (default: the whole wave)
#   --log-dir DIR        the new processes' stdout/stderr, one file per instance (default: discarded)
#   --command CMD        run `CMD INSTANCE` instead of `BIN start --daemon -c INSTANCE`, e.g.
#                        --command 'systemctl reload' with unit names as instances; it must
#                        likewise return 0 only once the instance serves on the new version
#   -f FILE              read instances from FILE, one per line (# comments, blank lines ignored)
#   --dry-run            print the waves and exit
#
# Before the first wave every config is checked with `BIN validate`: a config
# that does not validate stops the rollout before anything is touched.
# Exit status: 0 all upgraded; 1 stopped at a failure (or an invalid config);
# 2 bad usage. SIGINT/SIGTERM: no further upgrade starts, those under way finish.
set -uo pipefail

die_usage() { echo "rollout.sh: $*" >&2; echo "usage: rollout.sh [options] CONFIG... (see the header of $0)" >&2; exit 2; }

bin=mosnlite wait_timeout=60s first=1 percent=10 max_parallel=0 log_dir="" command="" dry_run=0
instances=()
while (($#)); do
  case $1 in
    --mosnlite) bin=${2?}; shift 2 ;;
    --wait-timeout) wait_timeout=${2?}; shift 2 ;;
    --first) first=${2?}; shift 2 ;;
    --percent) percent=${2?}; shift 2 ;;
    --max-parallel) max_parallel=${2?}; shift 2 ;;
    --log-dir) log_dir=${2?}; shift 2 ;;
    --command) command=${2?}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -f)
      [[ -r ${2-} ]] || die_usage "-f ${2-}: cannot read"
      while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}; line=${line#"${line%%[![:space:]]*}"}; line=${line%"${line##*[![:space:]]}"}
        [[ -n $line ]] && instances+=("$line")
      done <"$2"
      shift 2 ;;
    --) shift; instances+=("$@"); break ;;
    -*) die_usage "unknown option $1" ;;
    *) instances+=("$1"); shift ;;
  esac
done
for v in first percent max_parallel; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die_usage "--${v//_/-} ${!v}: want a whole number"
done
((first >= 1)) || die_usage "--first must be at least 1"
((percent >= 1 && percent <= 100)) || die_usage "--percent must be within 1..100"
n=${#instances[@]}
((n > 0)) || die_usage "no instance given"

# Waves as [start, end) indexes into instances.
w1=$((first < n ? first : n))
w2=$(((n * percent + 99) / 100))
((w2 > n - w1)) && w2=$((n - w1))
wave_start=(0 "$w1" $((w1 + w2)))
wave_end=("$w1" $((w1 + w2)) "$n")

now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

if ((dry_run)); then
  for w in 0 1 2; do
    ((wave_end[w] > wave_start[w])) || continue
    echo "wave $((w + 1)): ${instances[*]:wave_start[w]:wave_end[w]-wave_start[w]}"
  done
  exit 0
fi

if [[ -z $command ]] && ! command -v "$bin" >/dev/null; then
  die_usage "--mosnlite $bin: not found"
fi
[[ -z $log_dir ]] || mkdir -p "$log_dir" || exit 1

if [[ -z $command ]]; then
  bad=0
  for cfg in "${instances[@]}"; do
    if ! out=$("$bin" validate -c "$cfg" 2>&1); then
      echo "invalid config $cfg:" >&2
      printf '%s\n' "$out" | sed 's/^/    /' >&2
      bad=1
    fi
  done
  if ((bad)); then
    echo "rollout: not started: fix the configs above; no instance was touched" >&2
    exit 1
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mosnlite-rollout.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
interrupted=0
trap 'interrupted=1; echo "rollout: interrupted: waiting for the upgrades under way" >&2' INT TERM

# upgrade I: upgrade instance I in the background; its result lands in $work.
upgrade() {
  local i=$1 inst=${instances[$1]} t0 rc log=/dev/null
  [[ -n $log_dir ]] && log="$log_dir/$((i + 1))-$(basename "$inst").log"
  t0=$(now_ms)
  if [[ -n $command ]]; then
    # shellcheck disable=SC2086 # CMD is words by design
    $command "$inst" >"$work/$i.out" 2>&1
  else
    "$bin" start --daemon -c "$inst" --wait-timeout "$wait_timeout" --log-file "$log" >"$work/$i.out" 2>&1
  fi
  rc=$?
  echo "$rc $(($(now_ms) - t0))" >"$work/$i.rc"
}

# failed_since S E: did an upgrade among instances S..E-1 finish and fail?
failed_since() {
  local j rc
  for ((j = $1; j < $2; j++)); do
    [[ -f $work/$j.rc ]] || continue
    read -r rc _ <"$work/$j.rc"
    ((rc != 0)) && return 0
  done
  return 1
}

began=$(now_ms)
upgraded=0 failed=0 stopped_at=-1
for w in 0 1 2; do
  s=${wave_start[w]} e=${wave_end[w]}
  ((e > s)) || continue
  ((interrupted)) && { stopped_at=$s; break; }
  wt0=$(now_ms)
  echo "wave $((w + 1)): $((e - s)) instance(s)"
  running=() started=$s
  for ((i = s; i < e; i++)); do
    if ((max_parallel > 0)); then
      while ((${#running[@]} >= max_parallel)); do
        wait "${running[0]}"; running=("${running[@]:1}")
      done
      failed_since "$s" "$i" && break # a failure seen: start no more in this wave either
    fi
    ((interrupted)) && break
    upgrade "$i" & running+=($!)
    started=$((i + 1))
  done
  for p in "${running[@]}"; do wait "$p"; done
  wave_failed=0
  for ((i = s; i < started; i++)); do
    read -r rc ms <"$work/$i.rc"
    if ((rc == 0)); then
      upgraded=$((upgraded + 1))
      pid=$(sed -n 's/^mosnlite: pid \([0-9]*\) serves$/\1/p' "$work/$i.out")
      echo "  ok      ${instances[i]}${pid:+ (pid $pid)} in ${ms} ms"
    else
      failed=$((failed + 1)) wave_failed=1
      echo "  FAILED  ${instances[i]} (exit $rc after ${ms} ms):"
      sed 's/^/          /' "$work/$i.out"
    fi
  done
  echo "wave $((w + 1)) done in $(($(now_ms) - wt0)) ms"
  if ((wave_failed || started < e)); then
    stopped_at=$started
    break
  fi
done

total=$(($(now_ms) - began))
if ((stopped_at >= 0)); then
  echo "rollout stopped: $upgraded upgraded, $failed failed, $((n - upgraded - failed)) untouched (still on the old version), ${total} ms"
  for ((i = stopped_at; i < n; i++)); do
    echo "  untouched ${instances[i]}"
  done
  exit 1
fi
echo "rollout done: $upgraded of $n upgraded, ${total} ms"
