# Shared by scripts/java-client and scripts/canal-java: build a Maven project under tests/ once per
# content hash and keep the result under ~/.cache/canal-operator/<name>/<hash>, so later runs (and
# CI on the same machine) skip Maven. Source this file; it defines functions only.

# The files that make up PROJECT (pom.xml and src/), one per line, relative and in a stable order.
maven_project_sources() {
  (cd "$1" && { echo pom.xml; find src -type f | LC_ALL=C sort; })
}

# 16 hex digits naming the content of PROJECT's pom and sources.
maven_project_hash() {
  local project=$1 f
  (
    cd "$project"
    while IFS= read -r f; do
      printf '%s\0' "$f"
      cat -- "$f"
      printf '\0'
    done < <(maven_project_sources "$project")
  ) | sha256sum | cut -c1-16
}

# mvn -q package in PROJECT; prints Maven's output only when it fails. $1 = script name for messages.
maven_project_package() {
  local who=$1 project=$2 log start=$SECONDS
  command -v mvn >/dev/null 2>&1 ||
    { echo "$who: mvn not found: install Maven 3.8+ and a JDK 17 (Debian: apt-get install maven default-jdk-headless)" >&2; return 2; }
  log=$(mktemp "${TMPDIR:-/tmp}/${who##*/}-mvn.XXXXXX")
  echo "$who: building $project with Maven..." >&2
  if ! mvn -q -B -Dstyle.color=never -f "$project/pom.xml" package -DskipTests >"$log" 2>&1; then
    # Maven 3.8 prints stray ANSI resets even in batch mode: strip them.
    sed -e 's/\x1b\[[0-9;]*m//g' "$log" >&2
    rm -f "$log"
    echo "$who: Maven build of $project failed" >&2
    return 2
  fi
  rm -f "$log"
  echo "$who: built in $((SECONDS - start)) s" >&2
}

# Keeps the KEEP newest entries matching GLOB in DIR (other checkouts may use other versions).
maven_cache_prune() {
  local dir=$1 glob=$2 keep=$3 old
  while IFS= read -r old; do
    rm -rf -- "$old"
  done < <(find "$dir" -maxdepth 1 -name "$glob" -printf '%T@ %p\n' | sort -rn | tail -n +$((keep + 1)) | cut -d' ' -f2-)
}
