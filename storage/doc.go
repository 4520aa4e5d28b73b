// Package storage keeps wxacode's code images: in an S3-compatible bucket
// (AWS S3, MinIO, Tencent COS, Aliyun OSS) or in a local folder, under keys
// that are safe everywhere.
//
// Open picks the backend from a STORAGE_URL: file://DIR (the embedded
// default, file://./wxacodes) or s3://BUCKET[/PREFIX]. Every Store refuses
// to store anything but a PNG or JPEG image (found from the bytes, never
// from a header), records the image's content type, size, SHA-256 and what
// it was made from (scene, page, appid), and reports only what it really
// stored: Put returns nil only once the service has checked the bytes'
// signed SHA-256 (S3) or the file is renamed into place and synced
// (file://).
//
// # Keys
//
// Key(campaign, scene, ext) is the object key of a scene's image, below the
// store's prefix: NAME(campaign) "/" NAME(scene) "." ext. NAME encodes a
// string byte by byte:
//
//   - a-z, 0-9, "-" and "_" stay as they are;
//   - an uppercase letter becomes "!" and the letter in lowercase ("A" → "!a");
//   - every other byte becomes "(hh)", its value in two lowercase hex digits
//     ("." → "(2e)", "/" → "(2f)", "!" → "(21)", "(" → "(28)");
//   - a name Windows reserves for a device (con, prn, aux, nul, com0-com9,
//     lpt0-lpt9) gets its first letter escaped ("con" → "(63)on").
//
// Examples, in campaign "spring":
//
//	sku000123   spring/sku000123.jpg
//	SKU-7       spring/!s!k!u-7.jpg
//	a/b         spring/a(2f)b.jpg
//	..          spring/(2e)(2e).jpg
//	con         spring/(63)on.jpg
//	CON         spring/!c!o!n.jpg
//	id=42&x=1   spring/id(3d)42(26)x(3d)1.jpg
//
// So a key is plain for plain scenes and, for any scene, uses only
// a-z 0-9 - _ ! ( ) and the one "." before the extension: no character that
// S3, Linux, macOS or Windows treat specially, no uppercase (two scenes
// differing only in case, "ABC" and "abc", stay apart on case-insensitive
// file systems), no "." or ".." segment, no "/" or "\" inside a name, no
// trailing dot or space, no device name. The encoding is reversible:
// DecodeKey returns the campaign, scene and extension, and accepts only keys
// exactly as Key writes them, so distinct scenes always get distinct keys.
// A scene of 32 characters gives a name of at most 128 bytes.
//
// The paths of interfaces A and C (up to 1024 bytes) are encoded the same
// way while the file name (name and extension) fits in 255 bytes, the
// file-name limit of common file systems: "pages/item/item?id=42" becomes
// spring/pages(2f)item(2f)item(3f)id(3d)42.jpg. A longer one gets a digest
// key, spring/_sha256/HEX.jpg, HEX being the SHA-256 of the path: never
// equal to a readable key (which has one "/"), and with the campaign's name
// at most 512 bytes, so any store prefix up to 512 bytes keeps keys within
// S3's 1024.
//
// Stores check every key they are given (checkKey) against these rules
// whether or not Key made it, so no key can reach outside the store.
//
// # Local folder (file://)
//
// The image of key spring/sku000123.jpg is DIR/spring/sku000123.jpg, and
// its metadata an extended attribute of that same file, user.wxacode.meta:
// lines of a version, content type, size, modification time (ns), SHA-256,
// scene, page, appid and path. One file per image; the folders hold nothing but
// images, ready to hand to a printer.
//
// Put writes a temporary .tmp-* file in the final folder, attaches the
// metadata, and renames it over the final name. Durability is by group
// commit: one syncfs(2) makes the bytes of every image written meanwhile
// durable before their renames, and one more makes the renames durable
// before Put returns; concurrent Puts share both. A crash leaves at worst a
// hidden .tmp-* file (never listed), never a torn image under its name. The
// record pins the image by size and modification time: an image changed
// behind it (by hand) is described from its bytes, and Get fails if bytes
// pinned by the record do not match its SHA-256. On a file system without
// user extended attributes, Stat and List derive the SHA-256 from the bytes
// and the scene from the key (page and appid stay empty).
//
// The store never follows a symbolic link inside its folder (openat2 with
// RESOLVE_NO_SYMLINKS, or O_NOFOLLOW one component at a time) and never
// writes outside it: a key that meets a link is an error naming the link.
// The file store needs Linux.
//
// # S3
//
// Objects carry Content-Type and the metadata x-amz-meta-scene (or -path,
// see MetaPath), -page, -appid and -sha256 (values are ASCII, as S3
// requires). Put signs the
// request with the body's SHA-256 (x-amz-content-sha256, computed once for
// the metadata and reused), which S3-compatible services check against the
// bytes received, so no Content-MD5 is computed on top; the SDK's default
// trailing CRC checksums are turned off because COS and OSS do not accept
// them. Re-putting a key overwrites it with the same bytes. The endpoint,
// credentials and region come from the standard AWS configuration chain;
// see NewS3 and README.md for the settings of each service.
package storage
