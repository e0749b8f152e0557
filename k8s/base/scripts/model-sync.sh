#!/bin/sh
# Sync a cascade export from S3 into the /export emptyDir of the Triton pod (IRSA credentials only).
#   model-sync.sh once    init container: sync EXPORT_VERSION (or the version named in LATEST)
#   model-sync.sh watch   sidecar, every SYNC_INTERVAL_SECONDS:
#                         * LATEST names a new version: sync it into a fresh folder, switch the
#                           /export links to it and load the models through Triton's explicit
#                           model control API (restricted: header admin-key: $ADMIN_KEY);
#                         * a newer item snapshot was published (materialization CronJob): fetch
#                           it into the served feature_repo/item_snapshot/; the ranking model
#                           swaps it in within its refresh_seconds (no reload).
#
# S3:      s3://$EXPORT_BUCKET/$EXPORT_PREFIX/<version>/{export.json,model_repository/,artifacts/,feature_repo/}
#          s3://$EXPORT_BUCKET/$EXPORT_PREFIX/LATEST                       (text: the version to serve)
#          .../<version>/feature_repo/item_snapshot/{<snapshot>/,LATEST}   (rewritten by the CronJob)
# /export: versions/<version>/...                     one folder per synced version (current + previous)
#          export.json model_repository artifacts feature_repo -> versions/<current>/...  (symlinks)
#          .version                                   the version the links point to
# tritonserver serves /export/model_repository and the stages get CASCADE_EXPORT_ROOT=/export; a
# stage resolves its paths (symlinks included) when it loads, so models loaded before a switch keep
# reading their own version folder.
# feature_repo/feature_store.yaml is replaced by the cluster's Redis one ($FEAST_CONFIG, ConfigMap
# cascade-feast); its registry path data/registry.db is the registry shipped with the export.
set -eu
SRC="s3://${EXPORT_BUCKET}/${EXPORT_PREFIX:-exports}"
ROOT="${EXPORT_ROOT:-/export}"
FEAST_CONFIG="${FEAST_CONFIG:-/etc/cascade/feast/feature_store.yaml}"
STATE="${ROOT}/.version"
HEARTBEAT="${HEARTBEAT:-/tmp/model-sync.heartbeat}"
TRITON="${TRITON_URL:-http://127.0.0.1:8000}"
LINKS="export.json model_repository artifacts feature_repo"
SNAPSHOT_KEEP=3

log() { echo "model-sync: $*"; }

resolve_version() {
  if [ -n "${EXPORT_VERSION:-}" ] && [ "${EXPORT_VERSION}" != "latest" ]; then
    echo "${EXPORT_VERSION}"
  else
    aws s3 cp --only-show-errors "${SRC}/LATEST" - | tr -d '[:space:]'
  fi
}

# fetch_snapshot VERSION: bring feature_repo/item_snapshot/ of VERSION up to the snapshot named
# by its LATEST in S3; the folder is complete (renamed into place) before LATEST is replaced.
fetch_snapshot() {
  dir="${ROOT}/versions/$1/feature_repo/item_snapshot"
  remote=$(aws s3 cp --only-show-errors "${SRC}/$1/feature_repo/item_snapshot/LATEST" - | tr -d '[:space:]')
  [ -n "${remote}" ] || { echo "model-sync: ${SRC}/$1/feature_repo/item_snapshot/LATEST is empty" >&2; return 1; }
  current=$(tr -d '[:space:]' < "${dir}/LATEST" 2>/dev/null || true)
  [ "${remote}" = "${current}" ] && return 0
  mkdir -p "${dir}"
  if [ ! -d "${dir}/${remote}" ]; then
    rm -rf "${dir}/.tmp-${remote}"
    aws s3 sync --only-show-errors --no-progress "${SRC}/$1/feature_repo/item_snapshot/${remote}/" "${dir}/.tmp-${remote}/"
    test -f "${dir}/.tmp-${remote}/items.parquet" || { echo "model-sync: snapshot ${remote} has no items.parquet" >&2; return 1; }
    mv "${dir}/.tmp-${remote}" "${dir}/${remote}"
  fi
  echo "${remote}" > "${dir}/.LATEST.tmp"
  mv -f "${dir}/.LATEST.tmp" "${dir}/LATEST"
  # Keep the newest snapshots (names sort in publish order), like `cascade features materialize`.
  ls -1 "${dir}" | grep -v -e '^LATEST$' -e '^\.' | sort | head -n "-${SNAPSHOT_KEEP}" | while read -r old; do
    rm -rf "${dir:?}/${old}"
  done
  log "item snapshot of $1 is now ${remote}"
}

sync_version() {
  dest="${ROOT}/versions/$1"
  log "syncing ${SRC}/$1/ -> ${dest}"
  mkdir -p "${dest}"
  # Snapshots are fetched one at a time (fetch_snapshot), the SQLite online store is not used here.
  aws s3 sync --only-show-errors --no-progress --delete \
    --exclude 'feature_repo/item_snapshot/*' --exclude 'feature_repo/data/online.db' \
    "${SRC}/$1/" "${dest}/"
  for f in export.json model_repository/recommend/config.pbtxt feature_repo/cascade_repo.json; do
    test -f "${dest}/${f}" || { echo "model-sync: ${SRC}/$1/ has no ${f}" >&2; return 1; }
  done
  cp -f "${FEAST_CONFIG}" "${dest}/feature_repo/feature_store.yaml"
  fetch_snapshot "$1"
}

# activate VERSION: point the /export links at versions/VERSION (each switch is one rename).
activate() {
  for part in ${LINKS}; do
    ln -sfn "versions/$1/${part}" "${ROOT}/.${part}.new"
    mv -fT "${ROOT}/.${part}.new" "${ROOT}/${part}"
  done
  echo "$1" > "${STATE}"
}

load_all() {
  # Stage models first, the ensemble last, so `recommend` never points at a missing stage.
  for dir in "${ROOT}"/model_repository/*/; do
    m=$(basename "${dir}")
    [ "${m}" = "recommend" ] && continue
    curl -fsS -X POST -H "admin-key: ${ADMIN_KEY}" "${TRITON}/v2/repository/models/${m}/load" >/dev/null || return 1
  done
  curl -fsS -X POST -H "admin-key: ${ADMIN_KEY}" "${TRITON}/v2/repository/models/recommend/load" >/dev/null
}

# prune KEEP...: remove the version folders not named.
prune() {
  for dir in "${ROOT}"/versions/*/; do
    [ -d "${dir}" ] || continue
    v=$(basename "${dir}")
    case " $* " in *" ${v} "*) ;; *) rm -rf "${dir}" ;; esac
  done
}

case "${1:-once}" in
  once)
    v=$(resolve_version)
    [ -n "${v}" ] || { echo "model-sync: no version to serve (${SRC}/LATEST empty?)" >&2; exit 1; }
    sync_version "${v}"
    activate "${v}"
    log "serving ${v}"
    ;;
  watch)
    while true; do
      touch "${HEARTBEAT}"
      sleep "${SYNC_INTERVAL_SECONDS:-60}"
      have=$(cat "${STATE}" 2>/dev/null || true)
      want=$(resolve_version) || { echo "model-sync: cannot read version" >&2; continue; }
      if [ -n "${want}" ] && [ "${want}" != "${have}" ]; then
        if ! sync_version "${want}"; then
          echo "model-sync: sync of ${want} failed; still serving ${have}, retrying" >&2
        else
          activate "${want}"
          if load_all; then
            log "now serving ${want}"
            prune "${want}" "${have}"   # the previous folder stays for models still reading it
            have="${want}"
          elif [ -n "${have}" ]; then
            # Triton keeps a model whose load failed on its old version; reload the stages that
            # did switch, so all of them serve one version again. Retried next interval.
            echo "model-sync: loading ${want} failed; switching back to ${have}" >&2
            activate "${have}"
            load_all || echo "model-sync: reloading ${have} failed too" >&2
          fi
        fi
      fi
      [ -n "${have}" ] && { fetch_snapshot "${have}" || echo "model-sync: item snapshot sync failed" >&2; }
    done
    ;;
  *) echo "usage: model-sync.sh once|watch" >&2; exit 2 ;;
esac
