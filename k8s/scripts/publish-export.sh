#!/bin/sh
# Publish a `cascade export` folder for the cluster (aws CLI, credentials of the publisher):
#   k8s/scripts/publish-export.sh EXPORT_DIR s3://BUCKET/exports [--no-latest] [--device cpu|gpu]
# 1. s3://BUCKET/exports/<version>/ <- EXPORT_DIR (export.json, model_repository/, artifacts/,
#    feature_repo/); <version> is export.json's "version" (VERSION=... overrides). Versions are
#    immutable: an existing one is refused (FORCE=1 overwrites).
# 2. s3://BUCKET/exports/LATEST <- <version>, last (skipped with --no-latest): the Triton pods'
#    model-sync sidecars load it within SYNC_INTERVAL_SECONDS.
# --device: refuse an export made for another device (export.json "device", written by
#    `cascade export --device`); the eks-gpu overlay's path is `--device gpu` (k8s/README.md).
# Not uploaded: feature_repo/data/online.db (the SQLite online store; the cluster uses Redis) and
# the .cascade/ cache markers.
set -eu
usage() { echo "usage: $0 EXPORT_DIR s3://BUCKET/exports [--no-latest] [--device cpu|gpu]" >&2; exit 2; }
[ $# -ge 2 ] || usage
EXPORT=${1%/}; DEST=${2%/}; LATEST=yes; DEVICE=
shift 2
while [ $# -gt 0 ]; do
  case "$1" in
    --no-latest) LATEST=no ;;
    --device) [ $# -ge 2 ] || usage; DEVICE=$2; shift ;;
    *) usage ;;
  esac
  shift
done
case "${DEVICE}" in ""|cpu|gpu) ;; *) echo "publish-export: --device must be cpu or gpu, got '${DEVICE}'" >&2; exit 2 ;; esac
case "${DEST}" in s3://*) ;; *) usage ;; esac

for f in export.json model_repository/recommend/config.pbtxt feature_repo/cascade_repo.json \
         feature_repo/data/registry.db feature_repo/item_snapshot/LATEST; do
  test -f "${EXPORT}/${f}" || { echo "publish-export: ${EXPORT} lacks ${f} (run \`cascade export\`)" >&2; exit 1; }
done
# The Redis AUTH token lives in the cluster's Secret (cascade-feast-redis); an export whose
# feature_store.yaml carries a literal password (`cascade export --redis-connection ...,password=X`)
# would copy it into the bucket. ${ENV} references are fine.
if grep -Eiq '(password|requirepass)[[:space:]]*[=:][[:space:]]*["'"'"']?[^$[:space:]"'"'"']' "${EXPORT}/feature_repo/feature_store.yaml" 2>/dev/null; then
  echo "publish-export: ${EXPORT}/feature_repo/feature_store.yaml holds a literal Redis password; export with" \
       "--redis-connection '...,password=\${FEAST_REDIS_PASSWORD}' (or without one) so no secret is uploaded" >&2
  exit 1
fi
V=${VERSION:-$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "${EXPORT}/export.json")}
[ -n "${V}" ] || { echo "publish-export: no version in ${EXPORT}/export.json" >&2; exit 1; }
if [ -n "${DEVICE}" ]; then
  D=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("device", "cpu"))' "${EXPORT}/export.json")
  if [ "${D}" != "${DEVICE}" ]; then
    echo "publish-export: ${EXPORT} was exported for device '${D}', not '${DEVICE}' (run \`cascade export --device ${DEVICE}\`)" >&2
    exit 1
  fi
fi

if [ "${FORCE:-0}" != 1 ] && aws s3 ls "${DEST}/${V}/export.json" >/dev/null 2>&1; then
  echo "publish-export: ${DEST}/${V}/ exists already (FORCE=1 to overwrite)" >&2; exit 1
fi
echo "publish-export: ${EXPORT} -> ${DEST}/${V}/"
aws s3 sync --only-show-errors --no-progress --delete \
  --exclude 'feature_repo/data/online.db' --exclude '.cascade/*' --exclude '*/.cascade/*' \
  --exclude 'feature_repo/item_snapshot/LATEST' --exclude 'export.json' \
  "${EXPORT}/" "${DEST}/${V}/"
# Pointers after the content they name.
aws s3 cp --only-show-errors "${EXPORT}/feature_repo/item_snapshot/LATEST" "${DEST}/${V}/feature_repo/item_snapshot/LATEST"
aws s3 cp --only-show-errors "${EXPORT}/export.json" "${DEST}/${V}/export.json"
if [ "${LATEST}" = yes ]; then
  printf '%s\n' "${V}" | aws s3 cp --only-show-errors - "${DEST}/LATEST"
  echo "publish-export: ${DEST}/LATEST = ${V}"
else
  echo "publish-export: LATEST unchanged; serve it with: printf '%s\\n' ${V} | aws s3 cp - ${DEST}/LATEST"
fi
