// Memory behind a tensor: 64-byte aligned host memory, stream-ordered device
// memory, a non-owning view of someone else's device pointer, or a slice of
// another storage (Tensor.view). Shared by
// the tensor and every op in flight that uses it (std::shared_ptr is the
// refcount), so dispose() never frees memory a running op still reads.
#pragma once
#include <cstddef>
#include <memory>

namespace prism::binding {

class Storage {
 public:
  // Zero-filled memory on `device` (kCpuDevice for the host).
  static std::shared_ptr<Storage> allocate(int device, size_t bytes);
  // Non-owning view; the caller keeps the memory alive.
  static std::shared_ptr<Storage> wrap(int device, void* data, size_t bytes);
  // Bytes [offset, offset + bytes) of `parent`, which the slice keeps alive.
  static std::shared_ptr<Storage> slice(std::shared_ptr<Storage> parent, size_t offset,
                                        size_t bytes);

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  int device() const { return device_; }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool owning() const { return owning_; }

 private:
  // Owning storages are counted in memory_counters(device).
  Storage(int device, void* data, size_t bytes, bool owning);
  // An owning Storage of fresh memory (freed if the Storage cannot be made).
  static std::shared_ptr<Storage> own(int device, void* data, size_t bytes);
  // Gives back owned memory: the host's at once, a device's in its stream order.
  static void free_memory(int device, void* data, size_t bytes) noexcept;
  int device_;
  void* data_;
  size_t bytes_;
  bool owning_;
  std::shared_ptr<Storage> parent_;  // slices: the storage whose memory this is
};

}  // namespace prism::binding
