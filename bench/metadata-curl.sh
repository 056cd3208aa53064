#!/bin/bash
# The requests `kiln env` makes on EC2, made by curl, as a careful boot script would: the token,
# then the identity document, hostname, user-data and tag listing in one parallel curl, then the
# `env.` tags in one parallel curl, then an env file (temp + rename, 0600). No validation at all.
# Usage: bench/metadata-curl.sh URL OUT_DIR        (the twin of `kiln env` in bench/metadata.sh)
set -eu
url=$1 out=$2
mkdir -p "$out"
get=(curl -sf --no-progress-meter --noproxy '*')
token=$("${get[@]}" -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$url/latest/api/token")
header="X-aws-ec2-metadata-token: $token"
"${get[@]}" --parallel -H "$header" \
    -o "$out/document" "$url/latest/dynamic/instance-identity/document" \
    -o "$out/hostname" "$url/latest/meta-data/local-hostname" \
    -o "$out/user-data" "$url/latest/user-data" \
    -o "$out/tags" "$url/latest/meta-data/tags/instance"
args=()
while read -r key || [[ -n $key ]]; do  # the listing has no final newline
    [[ $key == env.* ]] && args+=(-o "$out/tag.$key" "$url/latest/meta-data/tags/instance/$key")
done < "$out/tags"
((${#args[@]} == 0)) || "${get[@]}" --parallel -H "$header" "${args[@]}"
document=$(<"$out/document")
field() { [[ $document =~ \"$1\"\ *:\ *\"([^\"]*)\" ]] && printf '%s' "${BASH_REMATCH[1]}"; }
umask 077
{
    for file in "$out"/tag.env.*; do
        [[ -e $file ]] && printf '%s="%s"\n' "${file##*/tag.env.}" "$(<"$file")"
    done
    printf '%s\n' "$(<"$out/user-data")"
    printf 'KILN_INSTANCE_ID="%s"\nKILN_REGION="%s"\nKILN_ZONE="%s"\nKILN_LOCAL_IPV4="%s"\nKILN_HOSTNAME="%s"\n' \
        "$(field instanceId)" "$(field region)" "$(field availabilityZone)" "$(field privateIp)" "$(<"$out/hostname")"
} > "$out/env.tmp"
mv "$out/env.tmp" "$out/env"
