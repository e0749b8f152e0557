#!/bin/sh
# The S3 side of the Feast materialization CronJob (IRSA credentials only).
#   feast-sync.sh pull   init container: sync the feature_repo/ of EXPORT_VERSION (or the version
#                        named in LATEST) into $REPO and remember the version in $VERSION_FILE
#   feast-sync.sh push   after `cascade items publish`: upload the new item snapshot (none when it
#                        wrote item_snapshot/UNCHANGED) to
#                        s3://.../<version>/feature_repo/item_snapshot/<snapshot>/, then its LATEST
#                        (last, so pollers only see complete snapshots), then drop older snapshots
#                        in S3 beyond the newest $SNAPSHOT_KEEP.
set -eu
SRC="s3://${EXPORT_BUCKET}/${EXPORT_PREFIX:-exports}"
REPO="${REPO:-/feature_repo}"
VERSION_FILE="${VERSION_FILE:-/tmp/export-version}"
SNAPSHOT_KEEP="${SNAPSHOT_KEEP:-3}"

case "${1:-}" in
  pull)
    if [ -n "${EXPORT_VERSION:-}" ] && [ "${EXPORT_VERSION}" != "latest" ]; then
      v="${EXPORT_VERSION}"
    else
      v=$(aws s3 cp --only-show-errors "${SRC}/LATEST" - | tr -d '[:space:]')
    fi
    [ -n "${v}" ] || { echo "feast-sync: no export version (${SRC}/LATEST empty?)" >&2; exit 1; }
    echo "feast-sync: pulling ${SRC}/${v}/feature_repo/ -> ${REPO}"
    # Old snapshots are not needed; LATEST is (new snapshot versions stay monotonic).
    aws s3 sync --only-show-errors --no-progress \
      --exclude 'item_snapshot/*' --exclude 'data/online.db' --exclude '.cascade/*' \
      "${SRC}/${v}/feature_repo/" "${REPO}/"
    mkdir -p "${REPO}/item_snapshot"
    aws s3 cp --only-show-errors "${SRC}/${v}/feature_repo/item_snapshot/LATEST" "${REPO}/item_snapshot/LATEST" \
      || echo "feast-sync: ${v} has no item snapshot yet"
    test -f "${REPO}/cascade_repo.json" || { echo "feast-sync: ${SRC}/${v}/feature_repo/ is not a cascade feature repo" >&2; exit 1; }
    echo "${v}" > "${VERSION_FILE}"
    ;;
  push)
    v=$(cat "${VERSION_FILE}")
    if [ -f "${REPO}/item_snapshot/UNCHANGED" ]; then
      echo "feast-sync: catalog unchanged, nothing to publish"
      exit 0
    fi
    snap=$(tr -d '[:space:]' < "${REPO}/item_snapshot/LATEST")
    test -f "${REPO}/item_snapshot/${snap}/items.parquet" || { echo "feast-sync: no snapshot ${snap} in ${REPO}" >&2; exit 1; }
    dest="${SRC}/${v}/feature_repo/item_snapshot"
    echo "feast-sync: publishing item snapshot ${snap} -> ${dest}/"
    aws s3 sync --only-show-errors --no-progress "${REPO}/item_snapshot/${snap}/" "${dest}/${snap}/"
    aws s3 cp --only-show-errors "${REPO}/item_snapshot/LATEST" "${dest}/LATEST"
    aws s3 ls "${dest}/" | awk '$1 == "PRE" {sub("/$", "", $2); print $2}' | grep -v '^\.' | sort \
      | head -n "-${SNAPSHOT_KEEP}" | while read -r old; do
        aws s3 rm --only-show-errors --recursive "${dest}/${old}/"
      done
    ;;
  *) echo "usage: feast-sync.sh pull|push" >&2; exit 2 ;;
esac
