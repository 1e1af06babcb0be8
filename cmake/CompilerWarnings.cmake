# evloader_set_warnings(<target>): the project's warning set, errors with EVLOADER_WERROR.
function(evloader_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wcast-align -Wunused -Woverloaded-virtual -Wimplicit-fallthrough)
  if(EVLOADER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
