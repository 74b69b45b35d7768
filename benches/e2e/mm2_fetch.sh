#!/usr/bin/env bash
# Resolve MirrorMaker 2 (dedicated mode) jars from Maven Central into
#   ${STRAIT_CACHE_DIR:-$HOME/.cache/strait}/mm2/VERSION/libs
# and print that directory. No network once cached (marker file .complete).
# Same logging backend as protocol-tests/harness/kafka.sh (slf4j -> log4j2).
set -euo pipefail
v=${1:-4.1.1}
d="${STRAIT_CACHE_DIR:-$HOME/.cache/strait}/mm2/$v"
if [[ -f $d/.complete ]]; then echo "$d/libs"; exit 0; fi
mkdir -p "$d"
{
  flock 9
  if [[ ! -f $d/.complete ]]; then
    echo "mm2_fetch.sh: resolving connect-mirror $v into $d/libs (maven)" >&2
    cat >"$d/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>strait</groupId><artifactId>mm2-dist</artifactId><version>$v</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-mirror</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-mirror-client</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>$v</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
    rm -rf "$d/libs" "$d/libs.tmp"
    mvn -B -q -Dstyle.color=never -f "$d/pom.xml" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$d/libs.tmp" >&2 \
      || { echo "mm2_fetch.sh: maven could not resolve connect-mirror $v" >&2; exit 1; }
    ls "$d/libs.tmp/connect-mirror-$v.jar" >/dev/null
    mv "$d/libs.tmp" "$d/libs"
    touch "$d/.complete"
  fi
} 9>"$d/.lock"
echo "$d/libs"
