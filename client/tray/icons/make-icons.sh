#!/bin/sh
# Draws the tray's state icons and the app icon with ImageMagick. The PNGs
# are committed; run this again only to change the pictures:
#   sh client/tray/icons/make-icons.sh
# Every state is a coloured disk with a dark rim and a white glyph, so it
# reads on light and dark panels alike. Drawn at 256 px, scaled down.
set -eu
cd "$(dirname "$0")"
disk() { # colour glyph-draw-args... -> 256 px PNG on stdout
    colour=$1; shift
    convert -size 256x256 xc:none \
        -fill "$colour" -stroke '#202020' -strokewidth 10 -draw 'circle 128,128 128,10' \
        -fill none -stroke white -strokewidth 30 -draw "stroke-linecap round stroke-linejoin round $*" \
        png:-
}
state() { # name colour draw...
    name=$1; shift
    disk "$@" | convert png:- -resize 64x64 -depth 8 "PNG32:$name.png"
}
state up-to-date '#2e7d32' 'polyline 72,134 112,174 184,92'
state syncing '#1565c0' 'path "M 70,150 A 62,62 0 0 1 170,82" path "M 186,106 A 62,62 0 0 1 86,174" polyline 150,66 178,82 160,110 polyline 106,190 78,174 96,146'
state paused '#616161' 'line 100,80 100,176 line 156,80 156,176'
state offline '#78909c' 'line 84,84 172,172 path "M 64,150 A 70,70 0 0 1 192,150"'
state error '#c62828' 'line 128,68 128,140 point 128,186 line 128,186 128,187'

# The app icon (menus, launchers): a rounded blue square holding a pouch.
app() {
    convert -size 256x256 xc:none \
        -fill '#1565c0' -stroke none -draw 'roundrectangle 8,8 248,248 48,48' \
        -fill white -draw 'path "M 64,96 L 192,96 L 176,208 Q 128,224 80,208 Z"' \
        -fill none -stroke white -strokewidth 18 -draw 'path "M 96,96 Q 96,44 128,44 Q 160,44 160,96"' \
        -fill '#1565c0' -stroke none -draw 'circle 128,144 128,128' \
        png:-
}
for size in 32 48 64 128 256; do
    mkdir -p "hicolor/${size}x${size}/apps"
    app | convert png:- -resize "${size}x${size}" -depth 8 "PNG32:hicolor/${size}x${size}/apps/pouch.png"
done
