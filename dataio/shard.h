/* Training shards, format "sspose-shard" version 1 (SPEC section 5).
 *
 * Writing and reading are split into a CPU part that any thread may run
 * (quantise + deflate + JPEG-encode: dataio_pack_sample; inflate + dequantise
 * + JPEG-decode: dataio_unpack_sample) and an HDF5 part (writer, reader) that
 * copies raw chunk bytes. HDF5 is not thread-safe, so every HDF5 call in
 * dataio holds the process-wide lock of core/h5util.h (core_h5_lock); other
 * code that calls HDF5 while a loader thread may be reading takes the same
 * lock. */
#ifndef SSPOSE_DATAIO_SHARD_H
#define SSPOSE_DATAIO_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "dataio/image.h"
#include "dataio/sample.h"

#define DATAIO_SHARD_FORMAT "sspose-shard"
#define DATAIO_SHARD_VERSION 1

/* The quantised target datasets, in this order everywhere below. */
enum { DATAIO_DS_MASK, DATAIO_DS_HEATMAP, DATAIO_DS_PAF, DATAIO_DS_OFFSET, DATAIO_DS_ATTENTION, DATAIO_NDS };
extern const char *const dataio_ds_names[DATAIO_NDS];
/* Channels per dataset (mask 1, heatmap 19, paf 38, offset 36, attention 19). */
extern const int dataio_ds_channels[DATAIO_NDS];
/* value = stored * scale: 1/255, 1/255, 1/127, 1/254, 1/255 */
extern const float dataio_ds_scale[DATAIO_NDS];

/* Everything a sample needs between the CPU and the HDF5 side: the JPEG,
 * one chunk per target dataset (deflated, or raw when raw[d] is set),
 * keypoints and meta. Buffers grow as needed and are reused across calls. */
typedef struct {
    uint8_t *jpeg;
    size_t jpeg_len, jpeg_cap;
    uint8_t *chunk[DATAIO_NDS];
    size_t chunk_len[DATAIO_NDS], chunk_cap[DATAIO_NDS];
    uint8_t raw[DATAIO_NDS];
    float *keypoints; /* [npersons,18,3] */
    int npersons, kp_cap;
    dataio_meta meta;
    /* CRC-32 of the stored bytes: [0] the JPEG, [1 + d] target chunk d. The
     * reader fills them from the shard's `checksums` dataset; bit k of crc_have
     * says crc[k] is known and applies to the bytes held (shards written before
     * checksums existed have none). */
    uint32_t crc[1 + DATAIO_NDS];
    unsigned crc_have;
} dataio_packed;

/* Compares the bytes held with the stored CRC-32s (the parts the reader filled).
 * 0, or -1 naming the part in err. Thread-safe, no HDF5. */
int dataio_packed_check(const dataio_packed *p, char *err, size_t errlen);

/* Decodes a shard's crop: JPEG only (a PNG or anything else is refused) and
 * every libjpeg warning, corrupt-data ones included, is an error. The same
 * contract as dataio_image_decode. */
int dataio_decode_crop(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen);

void dataio_packed_free(dataio_packed *p);

/* Quantises, deflates (zlib level `deflate_level`, 1..9) and JPEG-encodes a sample;
 * keypoint rows with no labelled keypoint at the end are dropped. Thread-safe. */
void dataio_pack_sample(const dataio_sample *s, int jpeg_quality, int deflate_level, dataio_packed *out);

/* Root attributes of a shard. */
typedef struct {
    int input_size, stride;
    double sigma, paf_width;
    int64_t seed;
    char source[1024];
    char augment[1024];
    /* filled by the reader */
    float scale[DATAIO_NDS]; /* each dataset's `scale` attribute (value = stored * scale) */
    int grid_h, grid_w;
    int max_persons; /* P */
    long count;      /* N */
} dataio_shard_attrs;

/* ---- writer: HDF5 side, one thread. Written to PATH.tmp.<pid>, renamed by close.
 * Besides SPEC section 5 it writes `checksums` (uint32 [N, 6]: CRC-32 of each
 * sample's JPEG bytes and of its five target chunks as stored) and puts
 * HDF5's Fletcher-32 filter on `keypoints`, `meta` and `checksums`. */
typedef struct dataio_shard_writer dataio_shard_writer;
dataio_shard_writer *dataio_shard_writer_open(const char *path, const dataio_shard_attrs *a);
void dataio_shard_writer_add(dataio_shard_writer *w, const dataio_packed *p);
/* Writes keypoints and meta, closes and renames; returns the file size in bytes. */
long long dataio_shard_writer_close(dataio_shard_writer *w);
/* Removes the temporary file of an unfinished writer (error paths). */
void dataio_shard_writer_abort(dataio_shard_writer *w);

/* ---- reader. Open validates format, version, attributes, dataset types and
 * shapes, and dies with one clear line naming the file otherwise. */
typedef struct dataio_shard dataio_shard;
dataio_shard *dataio_shard_open(const char *path);
void dataio_shard_close(dataio_shard *r);
long dataio_shard_count(const dataio_shard *r);
const dataio_shard_attrs *dataio_shard_info(const dataio_shard *r);

/* Copies sample i's stored bytes (no decompression, no decoding); takes the
 * HDF5 lock itself, so loader threads may call it concurrently. Target chunks
 * of one-sample-chunked datasets are read with pread outside the lock. */
void dataio_shard_read_packed(dataio_shard *r, long i, dataio_packed *out);
/* The same for some parts only (the loader needs no keypoints or meta). */
enum { DATAIO_PART_JPEG = 1, DATAIO_PART_TARGETS = 2, DATAIO_PART_KEYPOINTS = 4, DATAIO_PART_META = 8, DATAIO_PART_ALL = 15 };
void dataio_shard_read_packed_parts(dataio_shard *r, long i, unsigned parts, dataio_packed *out);
/* Inflates, dequantises and decodes the JPEG into s, which must have been
 * initialised with the shard's sizes (dataio_shard_sample_init). Thread-safe,
 * no HDF5. Dies on corrupt data, naming `what` (e.g. "shard.h5 sample 3"). */
void dataio_unpack_sample(const dataio_packed *p, const dataio_shard_attrs *a, dataio_sample *s, const char *what);
/* Both steps. */
void dataio_shard_read(dataio_shard *r, long i, dataio_sample *s);
/* Initialises s with the shard's S, grid and P. */
void dataio_shard_sample_init(const dataio_shard *r, dataio_sample *s);

#endif
