// MakeCudaDevice for builds without the CUDA backend (nvcc absent at configure time, or
// -DSTRATA_CUDA=OFF). kernels/CMakeLists.txt leaves this file out when CUDA is built.
#include "kernels/device.h"

namespace strata::kernels {

absl::StatusOr<std::unique_ptr<Device>> MakeCudaDevice(int ordinal) {
  return absl::UnavailableError(
      StrCat("cuda:", ordinal, " unavailable: Strata was built without the CUDA backend (nvcc "
             "was not found at configure time, or -DSTRATA_CUDA=OFF)"));
}

}  // namespace strata::kernels
