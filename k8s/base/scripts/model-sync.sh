#!/bin/sh
# Keep the Triton pod on the bundle named by s3://$EXPORT_BUCKET/$EXPORT_PREFIX/LATEST, through
# the same rollout logic as everywhere else (`cascade rollout`: verify sha256 + code version, load
# beside the live bundle, smoke, switch `recommend` in one step, keep the previous one loaded).
#   model-sync.sh once    init container: download + verify EXPORT_VERSION (or LATEST) into
#                         /export/bundles/<id>/ and name it in /export/.initial (the Triton
#                         container's `cascade serve` rolls it out first)
#   model-sync.sh watch   sidecar, every SYNC_INTERVAL_SECONDS:
#     * the live bundle is read from Triton itself (`cascade bundles --live`), never from a file
#       written beforehand, so a sidecar killed at any point simply retries on restart;
#     * a wanted bundle is downloaded into bundles/.partial-<id>/, verified against its manifest
#       (`cascade verify`), and only then renamed to bundles/<id>/ and rolled out: a failed or
#       interrupted download is never activated;
#     * failures are retried with exponential backoff (SYNC_BACKOFF_SECONDS doubling, at most
#       SYNC_BACKOFF_MAX_SECONDS), at most SYNC_MAX_ATTEMPTS times per bundle; then the bundle is
#       marked bad (bundles/.failed-<id>) until LATEST names another one. Live traffic stays put;
#     * bundle folders Triton no longer holds are pruned; the live bundle's item snapshot follows
#       the materialization CronJob (feature_repo/item_snapshot/, no reload).
#
# Runs in the serving image: downloads with `cascade objects cat|sync` (boto3, IRSA credentials;
# AWS_ENDPOINT_URL for an S3-compatible endpoint), checks with `cascade verify` (the signature too
# when CASCADE_BUNDLE_PUBLIC_KEY is set), loads with `cascade rollout` (admin key from
# CASCADE_TRITON_ADMIN_KEY_FILE or CASCADE_TRITON_ADMIN_KEY).
# S3:      s3://$EXPORT_BUCKET/$EXPORT_PREFIX/<id>/...  (`cascade release --publish`), .../LATEST
# /export: bundles/<id>/                  verified bundles (the stages read their artifacts here)
#          repository/                    Triton's --model-repository, explicit model control (written
#                                         by `cascade rollout`: <stage>__<id>/, recommend/, ...)
#          .live                          the live bundle, written only after a successful rollout
#          .initial                       the bundle `once` fetched (what Triton starts on without .live)
# feature_repo/feature_store.yaml is replaced by the cluster's Redis one ($FEAST_CONFIG); the
# manifest leaves that file, online.db and item_snapshot/ out of verification (deployment state).
set -eu
# The publish location (`cascade release --publish URL`); EXPORT_URL (s3://... or file:///...) overrides.
SRC="${EXPORT_URL:-s3://${EXPORT_BUCKET}/${EXPORT_PREFIX:-exports}}"
ROOT="${EXPORT_ROOT:-/export}"
BUNDLES="${ROOT}/bundles"
REPOSITORY="${ROOT}/repository"   # tritonserver --model-repository (explicit model control)
FEAST_CONFIG="${FEAST_CONFIG:-/etc/cascade/feast/feature_store.yaml}"
STATE="${ROOT}/.live"
HEARTBEAT="${HEARTBEAT:-/tmp/model-sync.heartbeat}"
GRPC="${TRITON_GRPC_URL:-127.0.0.1:8001}"
INTERVAL="${SYNC_INTERVAL_SECONDS:-60}"
BACKOFF="${SYNC_BACKOFF_SECONDS:-5}"
BACKOFF_MAX="${SYNC_BACKOFF_MAX_SECONDS:-300}"
MAX_ATTEMPTS="${SYNC_MAX_ATTEMPTS:-5}"
SNAPSHOT_KEEP=3

log() { echo "model-sync: $*"; }
err() { echo "model-sync: $*" >&2; }

resolve_version() {
  if [ -n "${EXPORT_VERSION:-}" ] && [ "${EXPORT_VERSION}" != "latest" ]; then
    echo "${EXPORT_VERSION}"
  else
    cascade objects cat "${SRC}/LATEST" | tr -d '[:space:]'
  fi
}

# fetch_snapshot ID: bring feature_repo/item_snapshot/ of bundle ID up to the snapshot named by
# its LATEST in S3; the folder is complete (renamed into place) before LATEST is replaced.
fetch_snapshot() {
  dir="${BUNDLES}/$1/feature_repo/item_snapshot"
  remote=$(cascade objects cat "${SRC}/$1/feature_repo/item_snapshot/LATEST" | tr -d '[:space:]')
  [ -n "${remote}" ] || { err "${SRC}/$1/feature_repo/item_snapshot/LATEST is empty"; return 1; }
  current=$(tr -d '[:space:]' < "${dir}/LATEST" 2>/dev/null || true)
  [ "${remote}" = "${current}" ] && return 0
  mkdir -p "${dir}"
  if [ ! -d "${dir}/${remote}" ]; then
    rm -rf "${dir}/.tmp-${remote}"
    cascade objects sync "${SRC}/$1/feature_repo/item_snapshot/${remote}/" "${dir}/.tmp-${remote}/"
    test -f "${dir}/.tmp-${remote}/items.parquet" || { err "snapshot ${remote} has no items.parquet"; return 1; }
    mv "${dir}/.tmp-${remote}" "${dir}/${remote}"
  fi
  echo "${remote}" > "${dir}/.LATEST.tmp"
  mv -f "${dir}/.LATEST.tmp" "${dir}/LATEST"
  ls -1 "${dir}" | grep -v -e '^LATEST$' -e '^\.' | sort | head -n "-${SNAPSHOT_KEEP}" | while read -r old; do
    rm -rf "${dir:?}/${old}"
  done
  log "item snapshot of $1 is now ${remote}"
}

# fetch ID: download bundle ID into a partial folder, verify it, then rename it into place.
# Returns 2 when the download itself failed (transient: retried with backoff, never counted
# toward giving up on the bundle), 1 when the bundle is bad (no feature_repo/, fails verification).
fetch() {
  [ -d "${BUNDLES}/$1" ] && return 0
  partial="${BUNDLES}/.partial-$1"
  mkdir -p "${partial}"
  log "downloading ${SRC}/$1/ -> ${partial}"
  # The sync resumes an interrupted download; --delete drops files of an older attempt.
  cascade objects sync --delete --exclude 'feature_repo/data/online.db' "${SRC}/$1/" "${partial}/" \
    || { err "download of $1 failed; not activated"; return 2; }
  cp -f "${FEAST_CONFIG}" "${partial}/feature_repo/feature_store.yaml" 2>/dev/null \
    || { err "${SRC}/$1/ has no feature_repo/; not activated"; return 1; }
  cascade verify "${partial}" || { err "bundle $1 fails verification; not activated"; return 1; }
  mv "${partial}" "${BUNDLES}/$1"
}

live_bundle() { cascade bundles --url "${GRPC}" --live; }

# prune: remove bundle folders Triton does not hold (keeps live, previous and any in use).
prune() {
  held=$(cascade bundles --url "${GRPC}" --held) || return 0
  for dir in "${BUNDLES}"/*/; do
    [ -d "${dir}" ] || continue
    b=$(basename "${dir}")
    case " ${held} $* " in *" ${b} "*) ;; *) rm -rf "${dir}" && log "pruned ${b}" ;; esac
  done
}

attempts_file() { echo "${BUNDLES}/.attempts-$1"; }

# sync_once: one pass of the watch loop; returns non-zero on a failure worth backing off for.
sync_once() {
  want=$(resolve_version) || { err "cannot read ${SRC}/LATEST"; return 1; }
  [ -n "${want}" ] || { err "${SRC}/LATEST is empty"; return 1; }
  have=$(live_bundle) || { err "Triton at ${GRPC} does not answer"; return 1; }
  if [ "${want}" != "${have}" ]; then
    if [ -f "${BUNDLES}/.failed-${want}" ]; then
      return 0  # given up on this bundle; waiting for LATEST to name another one
    fi
    fetched=0
    fetch "${want}" || fetched=$?
    if [ "${fetched}" -eq 2 ]; then
      return 1  # the network or the bucket failed, not the bundle: back off and try again
    fi
    n=$(cat "$(attempts_file "${want}")" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "${n}" > "$(attempts_file "${want}")"
    if [ "${fetched}" -eq 0 ] && cascade rollout "${BUNDLES}/${want}" --url "${GRPC}" --repository "${REPOSITORY}"; then
      echo "${want}" > "${STATE}.tmp" && mv -f "${STATE}.tmp" "${STATE}"   # only after success
      rm -f "$(attempts_file "${want}")"
      log "now serving ${want} (was ${have:-none})"
      have="${want}"
      prune "${want}"
    else
      if [ "${n}" -ge "${MAX_ATTEMPTS}" ]; then
        touch "${BUNDLES}/.failed-${want}"
        err "giving up on ${want} after ${n} attempts; still serving ${have:-none}"
        return 0
      fi
      err "attempt ${n}/${MAX_ATTEMPTS} for ${want} failed; still serving ${have:-none}"
      return 1
    fi
  fi
  if [ -n "${have}" ]; then
    fetch_snapshot "${have}" || err "item snapshot sync failed"
  fi
  return 0
}

mkdir -p "${BUNDLES}" "${REPOSITORY}"
case "${1:-once}" in
  once)
    v=$(resolve_version)
    [ -n "${v}" ] || { err "no version to serve (${SRC}/LATEST empty?)"; exit 1; }
    fetch "${v}" || { err "bundle ${v} could not be fetched"; exit 1; }
    echo "${v}" > "${ROOT}/.initial.tmp" && mv -f "${ROOT}/.initial.tmp" "${ROOT}/.initial"
    log "bundle ${v} is ready in ${BUNDLES}/${v}"
    ;;
  watch)
    delay="${BACKOFF}"
    while true; do
      touch "${HEARTBEAT}"
      if sync_once; then
        delay="${BACKOFF}"
        sleep "${INTERVAL}"
      else
        log "retrying in ${delay} s"
        sleep "${delay}"
        delay=$(awk -v d="${delay}" -v m="${BACKOFF_MAX}" 'BEGIN { d = d * 2; print (d > m ? m : d) }')
      fi
    done
    ;;
  *) err "usage: model-sync.sh once|watch"; exit 2 ;;
esac
