// Shim for the HDF5 C library (serial build, 1.10.x).
//
// HDF5 exposes its predefined types, property-list classes and open flags as macros
// that expand to function calls (H5OPEN ... _g) or casts, which Swift cannot import.
// Each is wrapped here as a `static inline` function named `distill_h5_...`; nothing
// else lives in this header. Only Sources/Formats/HDF5.swift imports this module.
#ifndef DISTILL_CHDF5_SHIM_H
#define DISTILL_CHDF5_SHIM_H

#include <hdf5.h>

// MARK: - Library

/// Fills `major.minor.release` of the HDF5 library linked at run time.
static inline herr_t distill_h5_libversion(unsigned *major, unsigned *minor, unsigned *release) {
    return H5get_libversion(major, minor, release);
}

// MARK: - Plain constants (casts Swift may import with the wrong type)

static inline hid_t distill_h5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t distill_h5_s_all(void) { return H5S_ALL; }
static inline hid_t distill_h5_e_default(void) { return H5E_DEFAULT; }
static inline size_t distill_h5_t_variable(void) { return H5T_VARIABLE; }

// MARK: - File open flags

static inline unsigned distill_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned distill_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned distill_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned distill_h5f_acc_excl(void) { return H5F_ACC_EXCL; }

// MARK: - Property-list classes

static inline hid_t distill_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t distill_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t distill_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t distill_h5p_dataset_access(void) { return H5P_DATASET_ACCESS; }
static inline hid_t distill_h5p_group_access(void) { return H5P_GROUP_ACCESS; }
static inline hid_t distill_h5p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t distill_h5p_link_access(void) { return H5P_LINK_ACCESS; }

// MARK: - Native (in-memory) types

static inline hid_t distill_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t distill_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t distill_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t distill_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t distill_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t distill_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }

// MARK: - File (on-disk) types: little-endian, as numpy and PyTorch write them

static inline hid_t distill_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t distill_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
static inline hid_t distill_h5t_std_i32le(void) { return H5T_STD_I32LE; }
static inline hid_t distill_h5t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t distill_h5t_std_u8le(void) { return H5T_STD_U8LE; }
static inline hid_t distill_h5t_std_u64le(void) { return H5T_STD_U64LE; }

/// The C string type; copy it with H5Tcopy before setting size or character set.
static inline hid_t distill_h5t_c_s1(void) { return H5T_C_S1; }

#endif // DISTILL_CHDF5_SHIM_H
