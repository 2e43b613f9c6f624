//! [`operations!`](crate::operations): typed write operations for a structure of your own,
//! without an operation enum and a response enum written by hand.

/// Makes a sequential structure replicable from its write methods: one typed method per
/// write on [`NodeReplicated`](crate::NodeReplicated), each returning its own type.
///
/// You write the structure's writes as ordinary `&mut self` methods. The macro keeps them
/// (as inherent methods of the structure, for sequential use and tests) and generates:
///
/// - `enum $Write`: one variant per method, named after it, holding its arguments — the
///   [`WriteOperation`](crate::Dispatch::WriteOperation) stored in the log;
/// - the [`Dispatch`](crate::Dispatch) impl: every write applies its method; there are no
///   read operations ([`ReadOperation`](crate::Dispatch::ReadOperation) is
///   [`Infallible`](core::convert::Infallible)): reads are closures, through
///   [`NodeReplicated::read`](crate::NodeReplicated::read);
/// - `trait $Trait`, implemented for `NodeReplicated<$Type>`: for each method, one with the
///   same name and arguments after a [`ThreadToken`](crate::ThreadToken), returning the
///   method's own return type. The trait must be in scope to call them (it is, in the
///   module that invokes the macro).
///
/// The rules of [`Dispatch`](crate::Dispatch) hold for the methods: deterministic, and
/// their arguments `Clone + Send` (every replica applies its own clone of each call);
/// return types `Send`.
///
/// # Syntax and limits
///
/// ```text
/// [attributes] [vis] trait Trait for Type, [attributes] [vis] enum Write {
///     [doc comments] [vis] fn name(&mut self, arg: Type, …) [-> Type] { body }
///     …
/// }
/// ```
///
/// - The structure is a non-generic type of the invoking crate (write the [`Dispatch`](crate::Dispatch)
///   impl by hand for a generic one; the typed map `ldnr-hashmap` does).
/// - The enum must be at least as visible as the structure (it is the structure's
///   `WriteOperation`); attributes before `enum` (e.g. `#[derive(Debug)]`) go on it, and
///   it always derives `Clone`. The trait may be less visible.
/// - A method's visibility applies to the inherent method; only doc comments may precede
///   a method (they document the inherent and the trait method).
/// - Arguments are plain `name: Type` pairs (no patterns, no `mut`), and no type may
///   name `Self` (the enum and the trait mention the types outside the `impl`).
/// - A write cannot be named like a method of [`NodeReplicated`](crate::NodeReplicated)
///   (`read`, `register`, `replicas`, …): that method would be called instead, so the
///   macro refuses it with a compile error.
///
/// # Examples
///
/// A routing index: a `BTreeMap` with typed writes and closure reads.
///
/// ```
/// use std::collections::BTreeMap;
/// use ldnr::NodeReplicated;
///
/// #[derive(Clone, Default)]
/// pub struct Routes(BTreeMap<String, u64>);
///
/// ldnr::operations! {
///     /// The writes of [`Routes`].
///     pub trait RouteWrites for Routes, #[derive(Debug)] pub enum RouteWrite {
///         /// Routes `name` to `backend`; returns the previous backend.
///         fn insert(&mut self, name: String, backend: u64) -> Option<u64> {
///             self.0.insert(name, backend)
///         }
///         /// Removes every route that starts with `prefix`; returns how many.
///         fn remove_prefix(&mut self, prefix: String) -> usize {
///             let before = self.0.len();
///             self.0.retain(|k, _| !k.starts_with(&prefix));
///             before - self.0.len()
///         }
///     }
/// }
///
/// let routes = NodeReplicated::builder(Routes::default()).build()?;
/// let tkn = routes.thread_token()?;
/// assert_eq!(routes.insert(tkn, "api/users".into(), 1), None);
/// assert_eq!(routes.insert(tkn, "api/users".into(), 2), Some(1));
/// routes.insert(tkn, "api/orders".into(), 3);
/// assert_eq!(routes.read(tkn, |r| r.0.get("api/users").copied()), Some(2));
/// assert_eq!(routes.remove_prefix(tkn, "api/".into()), 2);
/// assert!(routes.read(tkn, |r| r.0.is_empty()));
///
/// // The methods stay usable on a plain `Routes`, and the log's operations are data.
/// let mut plain = Routes::default();
/// assert_eq!(plain.insert("x".into(), 1), None);
/// let op = RouteWrite::insert("y".into(), 2);
/// assert_eq!(format!("{op:?}"), r#"insert("y", 2)"#);
/// # Ok::<(), ldnr::Error>(())
/// ```
///
/// A write named like a method of `NodeReplicated` is refused:
///
/// ```compile_fail
/// #[derive(Clone, Default)]
/// struct Flag(bool);
///
/// ldnr::operations! {
///     trait FlagWrites for Flag, enum FlagWrite {
///         fn register(&mut self) { self.0 = true; } // error: `NodeReplicated::register`
///     }
/// }
/// ```
#[macro_export]
macro_rules! operations {
    (
        $(#[$trait_meta:meta])*
        $tvis:vis trait $Trait:ident for $Type:ty,
        $(#[$enum_meta:meta])*
        $evis:vis enum $Write:ident {
            $(
                $(#[doc = $doc:expr])*
                $fvis:vis fn $name:ident(&mut $self:ident $(, $arg:ident : $arg_ty:ty)* $(,)?)
                    $(-> $ret:ty)? $body:block
            )+
        }
    ) => {
        $( $crate::operations!(@name $name); )+

        impl $Type {
            $(
                $(#[doc = $doc])*
                #[allow(dead_code, clippy::too_many_arguments)]
                $fvis fn $name(&mut $self $(, $arg: $arg_ty)*) $(-> $ret)? $body
            )+
        }

        #[doc = concat!("The write operations of `", stringify!($Type), "`, one per method of [`",
            stringify!($Trait), "`] (generated by `ldnr::operations!`).")]
        $(#[$enum_meta])*
        #[derive(Clone)]
        #[allow(non_camel_case_types)]
        $evis enum $Write {
            $(
                #[doc = concat!("A call of `", stringify!($name), "`.")]
                $name($($arg_ty),*),
            )+
        }

        $(#[$trait_meta])*
        $tvis trait $Trait {
            $(
                $(#[doc = $doc])*
                #[allow(clippy::too_many_arguments)]
                fn $name(&self, tkn: $crate::ThreadToken $(, $arg: $arg_ty)*)
                    -> $crate::operations!(@ret $($ret)?);
            )+
        }

        const _: () = {
            /// The responses of the writes, one variant per method.
            #[allow(non_camel_case_types)]
            pub enum __LdnrOperationsResponse {
                $( $name($crate::operations!(@ret $($ret)?)), )+
            }

            impl $crate::Dispatch for $Type {
                type ReadOperation = ::core::convert::Infallible;
                type WriteOperation = $Write;
                type Response = __LdnrOperationsResponse;

                fn dispatch(&self, op: ::core::convert::Infallible) -> __LdnrOperationsResponse {
                    match op {}
                }

                #[inline]
                fn dispatch_mut(&mut self, op: $Write) -> __LdnrOperationsResponse {
                    match op {
                        $(
                            $Write::$name($($arg),*) =>
                                __LdnrOperationsResponse::$name(self.$name($($arg),*)),
                        )+
                    }
                }
            }

            impl $Trait for $crate::NodeReplicated<$Type> {
                $(
                    #[inline]
                    #[track_caller]
                    #[allow(clippy::too_many_arguments)]
                    fn $name(&self, tkn: $crate::ThreadToken $(, $arg: $arg_ty)*)
                        -> $crate::operations!(@ret $($ret)?)
                    {
                        #[allow(unreachable_patterns)]
                        match self.execute_mut($Write::$name($($arg),*), tkn) {
                            __LdnrOperationsResponse::$name(r) => r,
                            _ => ::core::unreachable!("each write is answered by its own method"),
                        }
                    }
                )+
            }
        };
    };
    (@ret) => { () };
    (@ret $ret:ty) => { $ret };
    // Names that `NodeReplicated`'s own methods would shadow (an inherent method wins
    // over a trait method of the same name, silently).
    (@name builder) => { $crate::operations!(@taken builder); };
    (@name register) => { $crate::operations!(@taken register); };
    (@name deregister) => { $crate::operations!(@taken deregister); };
    (@name thread_token) => { $crate::operations!(@taken thread_token); };
    (@name execute) => { $crate::operations!(@taken execute); };
    (@name execute_mut) => { $crate::operations!(@taken execute_mut); };
    (@name read) => { $crate::operations!(@taken read); };
    (@name add_replica) => { $crate::operations!(@taken add_replica); };
    (@name remove_replica) => { $crate::operations!(@taken remove_replica); };
    (@name replicas) => { $crate::operations!(@taken replicas); };
    (@name replica_of) => { $crate::operations!(@taken replica_of); };
    (@name log_capacity) => { $crate::operations!(@taken log_capacity); };
    (@name $name:ident) => {};
    (@taken $name:ident) => {
        ::core::compile_error!(concat!(
            "ldnr::operations!: a write cannot be named `", stringify!($name),
            "`: `NodeReplicated` has a method of that name, which would be called instead"
        ));
    };
}
