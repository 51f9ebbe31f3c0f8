#![allow(non_camel_case_types)]
