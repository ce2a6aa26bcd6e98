#!/usr/bin/env bash
# System libraries for headless Qt/napari tests: Xvfb and the xcb/OpenGL libraries Qt needs.
set -euo pipefail
packages=(xvfb xauth libgl1-mesa-dri libegl1 libopengl0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1
          libxcb-xinerama0 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0
          libxcb-xinput0 libxcb-cursor0 libdbus-1-3 libfontconfig1)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
