// Hugging Face hub options from the process environment, read the way huggingface_hub reads
// them. Only the binary's entry points call this; modules take engine::HubOptions.
#pragma once

#include "engine/hf_hub.h"

namespace strata::server {

// Cache from HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub; endpoint from HF_ENDPOINT; token from HF_TOKEN, else the file
// $HF_HOME/token; offline from HF_HUB_OFFLINE.
engine::HubOptions HubOptionsFromEnv();

}  // namespace strata::server
