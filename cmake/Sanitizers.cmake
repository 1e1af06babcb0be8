# EVLOADER_SANITIZE="address;undefined" or "thread": applied to every target of the project.
if(EVLOADER_SANITIZE)
  list(JOIN EVLOADER_SANITIZE "," _evl_sanitizers)
  add_compile_options(-fsanitize=${_evl_sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_evl_sanitizers})
endif()
