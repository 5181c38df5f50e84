#!/bin/sh
# The `minio-init` one-shot service of docker-compose.yml (image minio/mc): creates the
# buckets and docent's own access key, then exits 0. Safe to run again on every `up`.
#   $MLFLOW_BUCKET  MLflow's artifacts (mlflow server --artifacts-destination s3://$MLFLOW_BUCKET)
#   $DOCS_BUCKET    docs trees to ingest: docent ingest s3://$DOCS_BUCKET/PREFIX
#   $S3_ACCESS_KEY / $S3_SECRET_KEY   the key docent and MLflow use, limited to those two
#                   buckets; MinIO's root credentials stay with MinIO and this job.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
: "${MLFLOW_BUCKET:?}" "${DOCS_BUCKET:?}"
MINIO_URL="${MINIO_URL:-http://minio:9000}"
POLICY=docent-buckets

mc alias set docent "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "docent/$MLFLOW_BUCKET" "docent/$DOCS_BUCKET"

policy_file="${TMPDIR:-/tmp}/$POLICY.json"
# printf, not cat: the mc image is minimal, the shell's builtins are what it surely has.
printf '%s\n' \
  '{"Version": "2012-10-17", "Statement": [' \
  "  {\"Effect\": \"Allow\", \"Action\": [\"s3:GetBucketLocation\", \"s3:ListBucket\", \"s3:ListBucketMultipartUploads\"]," \
  "   \"Resource\": [\"arn:aws:s3:::$MLFLOW_BUCKET\", \"arn:aws:s3:::$DOCS_BUCKET\"]}," \
  "  {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObject\", \"s3:PutObject\", \"s3:DeleteObject\", \"s3:AbortMultipartUpload\", \"s3:ListMultipartUploadParts\"]," \
  "   \"Resource\": [\"arn:aws:s3:::$MLFLOW_BUCKET/*\", \"arn:aws:s3:::$DOCS_BUCKET/*\"]}" \
  ']}' >"$policy_file"
mc admin policy create docent "$POLICY" "$policy_file"
mc admin user add docent "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# attach refuses a policy that is already attached: detach first, so a rerun succeeds.
mc admin policy detach docent "$POLICY" --user "$S3_ACCESS_KEY" >/dev/null 2>&1 || true
mc admin policy attach docent "$POLICY" --user "$S3_ACCESS_KEY"
echo "buckets $MLFLOW_BUCKET and $DOCS_BUCKET ready; access key $S3_ACCESS_KEY may use them"
