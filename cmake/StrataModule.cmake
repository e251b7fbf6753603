# strata_module(NAME DEPS ... [SUBDIRS ...] [EXCLUDE regex...]): a static library of every .cc
# file in the current folder (and SUBDIRS), so adding a source file needs no CMake edit.
function(strata_module name)
  cmake_parse_arguments(ARG "" "" "SUBDIRS;DEPS;EXCLUDE" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  foreach(sub ${ARG_SUBDIRS})
    file(GLOB sub_srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${sub}/*.cc)
    list(APPEND srcs ${sub_srcs})
  endforeach()
  foreach(ex ${ARG_EXCLUDE})
    list(FILTER srcs EXCLUDE REGEX "${ex}")
  endforeach()
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  else()  # A layer whose sources a later issue adds.
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
endfunction()

# strata_test_dir(dir LIBS ... LABELS ...): every tests/<dir>/*_test.cc becomes its own GoogleTest
# executable <dir>_<file> (so one broken test file never blocks another's build); each TEST is
# its own CTest case carrying LABELS.
function(strata_test_dir dir)
  cmake_parse_arguments(ARG "" "" "LIBS;LABELS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*_test.cc)
  foreach(src ${srcs})
    get_filename_component(stem ${src} NAME_WE)
    set(target ${dir}_${stem})
    add_executable(${target} ${src})
    target_link_libraries(${target} PRIVATE ${ARG_LIBS} GTest::gtest_main GTest::gmock)
    target_compile_definitions(${target} PRIVATE
      STRATA_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
      STRATA_BINARY_DIR="${CMAKE_BINARY_DIR}")
    gtest_discover_tests(${target}
      PROPERTIES LABELS "${ARG_LABELS}"
      DISCOVERY_TIMEOUT 60)
  endforeach()
endfunction()
