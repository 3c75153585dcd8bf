//! Positional parameters, as the reference's exported functions take them: the call's
//! argument value is an array with one element per parameter.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, IgnoredAny, SeqAccess, Visitor};

use crate::codec::Codec;
use crate::rpc::Error;

/// A tuple of parameters decoded from an argument array, with the reference's arity check:
/// a wrong count fails with `fn: expected N params, got M` (a `null` counts as no parameters).
pub trait Params: Sized + Send + 'static {
    /// Number of parameters.
    const COUNT: usize;

    /// Decodes the parameters; on a count mismatch also records `(expected, got)`.
    #[doc(hidden)]
    fn deserialize_params<'de, D: de::Deserializer<'de>>(
        de: D,
        mismatch: &mut Option<(usize, usize)>,
    ) -> Result<Self, D::Error>;
}

/// Decodes positional parameters from one rpc value.
pub(crate) fn decode_params<P: Params>(codec: &dyn Codec, body: &[u8]) -> Result<P, Error> {
    let mut mismatch = None;
    let res = crate::codec::decode_seed(
        codec,
        body,
        ParamsSeed::<P> {
            mismatch: &mut mismatch,
            params: std::marker::PhantomData,
        },
    );
    if let Some((expected, got)) = mismatch {
        return Err(Error::Params { expected, got });
    }
    Ok(res?)
}

/// Decodes `P`, noting a count mismatch on the side.
struct ParamsSeed<'m, P> {
    mismatch: &'m mut Option<(usize, usize)>,
    params: std::marker::PhantomData<P>,
}

impl<'de, P: Params> de::DeserializeSeed<'de> for ParamsSeed<'_, P> {
    type Value = P;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<P, D::Error> {
        P::deserialize_params(de, self.mismatch)
    }
}

fn count_error<E: de::Error>(
    mismatch: &mut Option<(usize, usize)>,
    expected: usize,
    got: usize,
) -> E {
    *mismatch = Some((expected, got));
    E::custom(format!("fn: expected {expected} params, got {got}"))
}

macro_rules! params_tuple {
    ($n:expr; $($T:ident),*) => {
        impl<$($T: DeserializeOwned + Send + 'static),*> Params for ($($T,)*) {
            const COUNT: usize = $n;

            #[allow(non_snake_case)]
            fn deserialize_params<'de, De: de::Deserializer<'de>>(
                de: De,
                mismatch: &mut Option<(usize, usize)>,
            ) -> Result<Self, De::Error> {
                struct V<'a, $($T),*>(&'a mut Option<(usize, usize)>, PhantomData<($($T,)*)>);

                impl<'de, 'a, $($T: DeserializeOwned),*> Visitor<'de> for V<'a, $($T),*> {
                    type Value = ($($T,)*);

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "an array of {} params", $n)
                    }

                    fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
                        Err(count_error(self.0, $n, 0))
                    }

                    fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
                        self.visit_unit()
                    }

                    #[allow(unused_assignments)]
                    fn visit_seq<Sq: SeqAccess<'de>>(self, mut seq: Sq) -> Result<Self::Value, Sq::Error> {
                        let mut got = 0usize;
                        $(
                            let $T = match seq.next_element::<$T>()? {
                                Some(v) => {
                                    got += 1;
                                    v
                                }
                                None => return Err(count_error(self.0, $n, got)),
                            };
                        )*
                        let mut extra = 0usize;
                        while seq.next_element::<IgnoredAny>()?.is_some() {
                            extra += 1;
                        }
                        if extra > 0 {
                            return Err(count_error(self.0, $n, $n + extra));
                        }
                        Ok(($($T,)*))
                    }
                }

                de.deserialize_any(V(mismatch, PhantomData))
            }
        }
    };
}

impl Params for () {
    const COUNT: usize = 0;

    fn deserialize_params<'de, D: de::Deserializer<'de>>(
        de: D,
        mismatch: &mut Option<(usize, usize)>,
    ) -> Result<Self, D::Error> {
        struct V<'a>(&'a mut Option<(usize, usize)>);

        impl<'de> Visitor<'de> for V<'_> {
            type Value = ();

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an empty array of params or null")
            }

            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }

            fn visit_none<E: de::Error>(self) -> Result<(), E> {
                Ok(())
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut extra = 0usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    extra += 1;
                }
                if extra > 0 {
                    return Err(count_error(self.0, 0, extra));
                }
                Ok(())
            }
        }

        de.deserialize_any(V(mismatch))
    }
}

params_tuple!(1; T0);
params_tuple!(2; T0, T1);
params_tuple!(3; T0, T1, T2);
params_tuple!(4; T0, T1, T2, T3);
params_tuple!(5; T0, T1, T2, T3, T4);
params_tuple!(6; T0, T1, T2, T3, T4, T5);
params_tuple!(7; T0, T1, T2, T3, T4, T5, T6);
params_tuple!(8; T0, T1, T2, T3, T4, T5, T6, T7);
