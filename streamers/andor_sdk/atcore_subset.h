/*
 * atcore_subset.h - our own declarations of the part of Andor's SDK3 C API (libatcore)
 * that detector-daq uses to drive Andor sCMOS cameras (Zyla 5.5, Zyla 4.2, Balor).
 *
 * Andor's atcore.h is part of its proprietary SDK and is not shipped here. This file is
 * written from public facts only (names, numeric values, parameter lists), collected with
 * their sources in docs/camera-sdk-facts.md, section 2; the source keys (A1, A2, ...) in the
 * comments below are that file's. Nothing here is copied from a vendor header.
 *
 * Two libraries implement it: Andor's libatcore.so at a site, and the fake SDK of
 * sim/andor_fake for tests and demos. streamers/andor_sdk/binding.py binds this header
 * once, with cffi in ABI mode, and loads either library by path.
 *
 * Conventions of the SDK: every function returns AT_SUCCESS (0) or an AT_ERR_* code;
 * features are named by wide strings (AT_WC is wchar_t: 4 bytes, UTF-32, on Linux);
 * cameras are AT_H handles from AT_Open; AT_HANDLE_SYSTEM addresses the library itself
 * (DeviceCount, SoftwareVersion). On Linux the functions use the plain C calling
 * convention (AT_EXP_CONV is empty or only a visibility attribute: A1, A2, A3), so no
 * convention appears below; Windows (stdcall on 32-bit) is not a target.
 *
 * Only the declarations between the cffi markers are read by the binding; they may hold
 * plain "#define NAME integer" lines, which cffi understands, and nothing else of the
 * preprocessor.
 */
#ifndef DETECTOR_DAQ_ATCORE_SUBSET_H
#define DETECTOR_DAQ_ATCORE_SUBSET_H

#include <stddef.h> /* wchar_t */

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
/* types: atcore.h as published in WuhrlWuhrd/Andor3Capture (A1), johndempster/WinFluorXE (A2)
   and karpov-sv/fast (A3); AT_64 is long long on every compiler we build with. */
typedef int AT_H;
typedef int AT_BOOL;
typedef long long AT_64;
typedef unsigned char AT_U8;
typedef wchar_t AT_WC;

/* constants: A1-A3. AT_INFINITE is the Timeout of AT_WaitBuffer that never expires. */
#define AT_INFINITE 0xFFFFFFFF
#define AT_TRUE 1
#define AT_FALSE 0
#define AT_HANDLE_UNINITIALISED -1
#define AT_HANDLE_SYSTEM 1

/* return codes, values: A1 and A2 (A3 lacks AT_ERR_DEVICENOTFOUND); meanings quoted from the
   SDK manual by esrf-bliss/Lima-camera-andor3 (A6) where it gives them. */
#define AT_SUCCESS 0
#define AT_ERR_NOTINITIALISED 1          /* the library or a handle is not initialised */
#define AT_ERR_NOTIMPLEMENTED 2          /* the camera has no such feature */
#define AT_ERR_READONLY 3
#define AT_ERR_NOTREADABLE 4             /* not readable now */
#define AT_ERR_NOTWRITABLE 5             /* not writable now (for example while acquiring) */
#define AT_ERR_OUTOFRANGE 6              /* outside the feature's minimum and maximum */
#define AT_ERR_INDEXNOTAVAILABLE 7
#define AT_ERR_INDEXNOTIMPLEMENTED 8
#define AT_ERR_EXCEEDEDMAXSTRINGLENGTH 9
#define AT_ERR_CONNECTION 10             /* connecting to or disconnecting from the hardware */
#define AT_ERR_NODATA 11
#define AT_ERR_INVALIDHANDLE 12
#define AT_ERR_TIMEDOUT 13               /* AT_WaitBuffer: no buffer filled within the timeout */
#define AT_ERR_BUFFERFULL 14             /* the input queue is at its capacity */
#define AT_ERR_INVALIDSIZE 15            /* a queued buffer's size is not the frame size */
#define AT_ERR_INVALIDALIGNMENT 16       /* a queued buffer is not 8-byte aligned */
#define AT_ERR_COMM 17
#define AT_ERR_STRINGNOTAVAILABLE 18
#define AT_ERR_STRINGNOTIMPLEMENTED 19
#define AT_ERR_NULL_FEATURE 20           /* 20-36: a NULL was passed for that argument */
#define AT_ERR_NULL_HANDLE 21
#define AT_ERR_NULL_IMPLEMENTED_VAR 22
#define AT_ERR_NULL_READABLE_VAR 23
#define AT_ERR_NULL_READONLY_VAR 24
#define AT_ERR_NULL_WRITABLE_VAR 25
#define AT_ERR_NULL_MINVALUE 26
#define AT_ERR_NULL_MAXVALUE 27
#define AT_ERR_NULL_VALUE 28
#define AT_ERR_NULL_STRING 29
#define AT_ERR_NULL_COUNT_VAR 30
#define AT_ERR_NULL_ISAVAILABLE_VAR 31
#define AT_ERR_NULL_MAXSTRINGLENGTH 32
#define AT_ERR_NULL_EVCALLBACK 33
#define AT_ERR_NULL_QUEUE_PTR 34
#define AT_ERR_NULL_WAIT_PTR 35
#define AT_ERR_NULL_PTRSIZE 36
#define AT_ERR_NOMEMORY 37
#define AT_ERR_DEVICEINUSE 38
#define AT_ERR_DEVICENOTFOUND 39         /* newer headers only (A1, A2) */
#define AT_ERR_HARDWARE_OVERFLOW 100

/* the library: A1-A3; the order of use (initialise, DeviceCount, open, close, finalise)
   from AlexShkarin/pyLabLib (A5) and areaDetector/ADAndor3 (A7). */
int AT_InitialiseLibrary(void);
int AT_FinaliseLibrary(void);
int AT_Open(int CameraIndex, AT_H *Hndl);
int AT_Close(AT_H Hndl);

/* features: A1-A3 */
int AT_IsImplemented(AT_H Hndl, const AT_WC *Feature, AT_BOOL *Implemented);
int AT_IsWritable(AT_H Hndl, const AT_WC *Feature, AT_BOOL *Writable);
int AT_SetInt(AT_H Hndl, const AT_WC *Feature, AT_64 Value);
int AT_GetInt(AT_H Hndl, const AT_WC *Feature, AT_64 *Value);
int AT_GetIntMax(AT_H Hndl, const AT_WC *Feature, AT_64 *MaxValue);
int AT_GetIntMin(AT_H Hndl, const AT_WC *Feature, AT_64 *MinValue);
int AT_SetFloat(AT_H Hndl, const AT_WC *Feature, double Value);
int AT_GetFloat(AT_H Hndl, const AT_WC *Feature, double *Value);
int AT_GetFloatMax(AT_H Hndl, const AT_WC *Feature, double *MaxValue);
int AT_GetFloatMin(AT_H Hndl, const AT_WC *Feature, double *MinValue);
int AT_SetBool(AT_H Hndl, const AT_WC *Feature, AT_BOOL Value);
int AT_GetBool(AT_H Hndl, const AT_WC *Feature, AT_BOOL *Value);
int AT_SetEnumIndex(AT_H Hndl, const AT_WC *Feature, int Value);
int AT_SetEnumString(AT_H Hndl, const AT_WC *Feature, const AT_WC *String);
int AT_GetEnumIndex(AT_H Hndl, const AT_WC *Feature, int *Value);
int AT_GetEnumCount(AT_H Hndl, const AT_WC *Feature, int *Count);
int AT_IsEnumIndexAvailable(AT_H Hndl, const AT_WC *Feature, int Index, AT_BOOL *Available);
int AT_GetEnumStringByIndex(AT_H Hndl, const AT_WC *Feature, int Index, AT_WC *String,
                            int StringLength);
int AT_Command(AT_H Hndl, const AT_WC *Feature);
int AT_GetString(AT_H Hndl, const AT_WC *Feature, AT_WC *String, int StringLength);
int AT_GetStringMaxLength(AT_H Hndl, const AT_WC *Feature, int *MaxStringLength);

/* buffers: A1-A3; Timeout in ms (A5, A8); the size and alignment rules are the manual's as
   quoted by A6. */
int AT_QueueBuffer(AT_H Hndl, AT_U8 *Ptr, int PtrSize);
int AT_WaitBuffer(AT_H Hndl, AT_U8 **Ptr, int *PtrSize, unsigned int Timeout);
int AT_Flush(AT_H Hndl);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif
