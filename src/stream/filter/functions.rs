//! The functions fink adds to CEL, and the names and arities `fink
//! validate` accepts.
//!
//! Numbers mix as users write them in Python: `candidate.ndethist <= 20.0`
//! and `mulens > 0` both work (CEL compares int and double already; the
//! arithmetic below also mixes them). A null operand of arithmetic gives
//! null, so that with `on_null = "false"` the comparison it feeds is false.

use std::sync::Arc;

use cel::extractors::Arguments;
use cel::objects::Value;
use cel::{Context, ExecutionError};

pub const ADD: &str = "fink_add";
pub const SUB: &str = "fink_sub";
pub const MUL: &str = "fink_mul";
pub const DIV: &str = "fink_div";
pub const LT: &str = "fink_lt";
pub const LE: &str = "fink_le";
pub const GT: &str = "fink_gt";
pub const GE: &str = "fink_ge";

/// Global functions: (name, min args, max args).
pub const GLOBAL: &[(&str, usize, usize)] = &[
    ("abs", 1, 1),
    ("sqrt", 1, 1),
    ("log10", 1, 1),
    ("pow", 2, 2),
    ("galactic_b", 2, 2),
    ("galactic_l", 2, 2),
    ("ecliptic_b", 2, 2),
    ("mag_from_flux", 1, 1),
    ("filter", 1, 1),
    // CEL's own.
    ("size", 1, 1),
    ("int", 1, 1),
    ("uint", 1, 1),
    ("double", 1, 1),
    ("string", 1, 1),
    ("bytes", 1, 1),
    ("bool", 1, 1),
    ("type", 1, 1),
    ("dyn", 1, 1),
    ("matches", 2, 2),
    ("max", 1, usize::MAX),
    ("min", 1, usize::MAX),
    ("timestamp", 1, 1),
    ("duration", 1, 1),
];

/// Functions called on a value (`x.startsWith("ZTF")`).
pub const MEMBER: &[(&str, usize, usize)] =
    &[("size", 0, 0), ("contains", 1, 1), ("startsWith", 1, 1), ("endsWith", 1, 1), ("matches", 1, 1)];

pub fn global_arity(name: &str) -> Option<(usize, usize)> {
    GLOBAL.iter().find(|(n, _, _)| *n == name).map(|(_, a, b)| (*a, *b))
}

pub fn member_arity(name: &str) -> Option<(usize, usize)> {
    MEMBER.iter().find(|(n, _, _)| *n == name).map(|(_, a, b)| (*a, *b))
}

/// The galactic frame from ICRS, as astropy 8 computes it (`SkyCoord(...,
/// frame="icrs").galactic` of the unit vectors).
const TO_GALACTIC: [[f64; 3]; 3] = [
    [-0.05487565771259163, -0.8734370519556159, -0.48383507361671546],
    [0.4941094371927268, -0.4448297212232952, 0.7469821839866676],
    [-0.8676661375596576, -0.19807633727300053, 0.4559838136873016],
];

/// The barycentric mean ecliptic of J2000 from ICRS (astropy's
/// `BarycentricMeanEcliptic()`): for a direction, a fixed rotation.
const TO_ECLIPTIC: [[f64; 3]; 3] = [
    [0.9999999999999941, -7.078368960971556e-08, 8.056213977613186e-08],
    [3.2897004077419646e-08, 0.9174821299149584, 0.39777699944404793],
    [-1.0207044725484355e-07, -0.39777699944404304, 0.9174821299149556],
];

/// Rubin's flux zero point: AB magnitude of a flux in nJy.
const ZP_NJY: f64 = 31.4;

/// (longitude, latitude) in degrees of an ICRS (ra, dec) in another frame.
pub fn rotate(m: &[[f64; 3]; 3], ra: f64, dec: f64) -> (f64, f64) {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    let v = [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()];
    let r: Vec<f64> = m.iter().map(|row| row[0] * v[0] + row[1] * v[1] + row[2] * v[2]).collect();
    let lon = r[1].atan2(r[0]).to_degrees().rem_euclid(360.0);
    let lat = r[2].clamp(-1.0, 1.0).asin().to_degrees();
    (lon, lat)
}

pub fn galactic(ra: f64, dec: f64) -> (f64, f64) {
    rotate(&TO_GALACTIC, ra, dec)
}

pub fn ecliptic(ra: f64, dec: f64) -> (f64, f64) {
    rotate(&TO_ECLIPTIC, ra, dec)
}

/// AB magnitude of a flux in nJy; NaN (every comparison false) for a flux
/// that is not positive, as fink-filters' `flux_to_apparent_mag`.
pub fn mag_from_flux(flux: f64) -> f64 {
    if flux > 0.0 && flux.is_finite() {
        ZP_NJY - 2.5 * flux.log10()
    } else {
        f64::NAN
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn not_a_number(func: &str, v: &Value) -> ExecutionError {
    ExecutionError::function_error(func, format!("expects a number, got {v:?}"))
}

/// A function of numbers: null in, null out.
fn numeric(func: &'static str, args: &[Value], f: impl Fn(&[f64]) -> f64) -> Result<Value, ExecutionError> {
    let mut xs = Vec::with_capacity(args.len());
    for a in args {
        if matches!(a, Value::Null) {
            return Ok(Value::Null);
        }
        xs.push(number(a).ok_or_else(|| not_a_number(func, a))?);
    }
    Ok(Value::Float(f(&xs)))
}

fn arith(op: &'static str, a: &Value, b: &Value) -> Result<Value, ExecutionError> {
    use Value::*;
    let overflow = || ExecutionError::function_error(op, "integer overflow");
    Ok(match (a, b) {
        (Null, _) | (_, Null) => Null,
        (Int(x), Int(y)) => match op {
            "+" => Int(x.checked_add(*y).ok_or_else(overflow)?),
            "-" => Int(x.checked_sub(*y).ok_or_else(overflow)?),
            "*" => Int(x.checked_mul(*y).ok_or_else(overflow)?),
            _ => {
                if *y == 0 {
                    return Err(ExecutionError::function_error(op, "division by zero"));
                }
                Int(x.checked_div(*y).ok_or_else(overflow)?)
            }
        },
        (UInt(x), UInt(y)) => match op {
            "+" => UInt(x.checked_add(*y).ok_or_else(overflow)?),
            "-" => UInt(x.checked_sub(*y).ok_or_else(overflow)?),
            "*" => UInt(x.checked_mul(*y).ok_or_else(overflow)?),
            _ => UInt(x.checked_div(*y).ok_or_else(|| ExecutionError::function_error(op, "division by zero"))?),
        },
        (String(x), String(y)) if op == "+" => String(Arc::new(format!("{x}{y}"))),
        (List(x), List(y)) if op == "+" => List(Arc::new(x.iter().chain(y.iter()).cloned().collect())),
        (Bytes(x), Bytes(y)) if op == "+" => Bytes(Arc::new(x.iter().chain(y.iter()).copied().collect())),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => Float(match op {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                _ => x / y,
            }),
            _ => {
                return Err(ExecutionError::function_error(
                    op,
                    format!("no such operation: {} {op} {}", a.type_of(), b.type_of()),
                ))
            }
        },
    })
}

/// An ordering comparison where a null operand (or NaN) makes it false.
fn compare(a: &Value, b: &Value, want: fn(std::cmp::Ordering) -> bool) -> Result<Value, ExecutionError> {
    if matches!(a, Value::Null) || matches!(b, Value::Null) {
        return Ok(Value::Bool(false));
    }
    match a.partial_cmp(b) {
        Some(o) => Ok(Value::Bool(want(o))),
        None if number(a).is_some() && number(b).is_some() => Ok(Value::Bool(false)), // NaN
        None => Err(ExecutionError::function_error("compare", format!("cannot compare {a:?} with {b:?}"))),
    }
}

fn two(args: &Arc<Vec<Value>>) -> (&Value, &Value) {
    (&args[0], &args[1])
}

/// Add fink's functions to a root context.
pub fn register(ctx: &mut Context) {
    let ok = |r: Result<(), cel::DeclarationError>| r.expect("fink's function names do not clash with CEL's");
    ok(ctx.add_function(ADD, |Arguments(a): Arguments| arith("+", two(&a).0, two(&a).1)));
    ok(ctx.add_function(SUB, |Arguments(a): Arguments| arith("-", two(&a).0, two(&a).1)));
    ok(ctx.add_function(MUL, |Arguments(a): Arguments| arith("*", two(&a).0, two(&a).1)));
    ok(ctx.add_function(DIV, |Arguments(a): Arguments| arith("/", two(&a).0, two(&a).1)));
    ok(ctx.add_function(LT, |Arguments(a): Arguments| compare(&a[0], &a[1], |o| o.is_lt())));
    ok(ctx.add_function(LE, |Arguments(a): Arguments| compare(&a[0], &a[1], |o| o.is_le())));
    ok(ctx.add_function(GT, |Arguments(a): Arguments| compare(&a[0], &a[1], |o| o.is_gt())));
    ok(ctx.add_function(GE, |Arguments(a): Arguments| compare(&a[0], &a[1], |o| o.is_ge())));
    ok(ctx.add_function("abs", |Arguments(a): Arguments| match &a[0] {
        Value::Int(i) => Ok(Value::Int(i.checked_abs().unwrap_or(i64::MAX))),
        other => numeric("abs", std::slice::from_ref(other), |x| x[0].abs()),
    }));
    ok(ctx.add_function("sqrt", |Arguments(a): Arguments| numeric("sqrt", &a, |x| x[0].sqrt())));
    ok(ctx.add_function("log10", |Arguments(a): Arguments| numeric("log10", &a, |x| x[0].log10())));
    ok(ctx.add_function("pow", |Arguments(a): Arguments| numeric("pow", &a, |x| x[0].powf(x[1]))));
    ok(ctx.add_function("galactic_b", |Arguments(a): Arguments| numeric("galactic_b", &a, |x| galactic(x[0], x[1]).1)));
    ok(ctx.add_function("galactic_l", |Arguments(a): Arguments| numeric("galactic_l", &a, |x| galactic(x[0], x[1]).0)));
    ok(ctx.add_function("ecliptic_b", |Arguments(a): Arguments| numeric("ecliptic_b", &a, |x| ecliptic(x[0], x[1]).1)));
    ok(ctx.add_function("mag_from_flux", |Arguments(a): Arguments| {
        numeric("mag_from_flux", &a, |x| mag_from_flux(x[0]))
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ra, dec, galactic l, galactic b, ecliptic b), from astropy 8.0.2:
    /// `SkyCoord(ra, dec, unit="deg").galactic` and
    /// `.transform_to(BarycentricMeanEcliptic())`, on 12 random directions
    /// (numpy default_rng(7), uniform on the sphere).
    const ASTROPY: &[(f64, f64, f64, f64, f64)] = &[
        (225.034368, -29.357726, 333.922315446, 25.659076925, -11.800796057),
        (322.996968, -6.306518, 47.281983362, -38.339834424, 7.884299642),
        (279.246848, 0.521199, 31.747404578, 3.452678586, 23.636805595),
        (81.074588, 6.142102, 197.004202899, -16.236996509, -17.010018245),
        (108.059863, 82.307430, 131.580276714, 27.560064314, 59.160093485),
        (314.479240, 35.825871, 78.923869179, -6.397353936, 50.097905256),
        (1.895510, 14.143924, 107.127742087, -47.377570289, 12.206522985),
        (295.642231, 77.937520, 110.054141540, 23.876403800, 76.449620794),
        (286.944994, -34.707184, 2.586236860, -18.165014645, -12.098535365),
        (168.456583, -42.810514, 284.500270320, 16.540676361, -42.991760471),
        (109.091674, 13.007536, 204.008175233, 11.348063167, -9.192171301),
        (100.233220, -65.799422, 275.917936171, -25.634401209, -85.802648132),
    ];

    #[test]
    fn sky_frames_agree_with_astropy() {
        for &(ra, dec, l, b, eb) in ASTROPY {
            let (gl, gb) = galactic(ra, dec);
            // The inputs are rounded to 1e-6 degree: agree to 1e-5.
            assert!((gl - l).abs() < 1e-5 && (gb - b).abs() < 1e-5, "({ra}, {dec}): {gl} {gb} vs {l} {b}");
            assert!((ecliptic(ra, dec).1 - eb).abs() < 1e-5, "({ra}, {dec}): {} vs {eb}", ecliptic(ra, dec).1);
        }
    }

    #[test]
    fn magnitudes_from_flux_follow_fink_filters() {
        // fink_filters.rubin.utils.flux_to_apparent_mag([3630.78, 1e6, 0, -5])
        assert!((mag_from_flux(3630.78) - 22.5).abs() < 1e-4);
        assert!((mag_from_flux(1e6) - 16.4).abs() < 1e-9);
        assert!(mag_from_flux(0.0).is_nan() && mag_from_flux(-5.0).is_nan());
    }

    #[test]
    fn arithmetic_mixes_numbers_and_propagates_null() {
        assert_eq!(arith("-", &Value::Float(2.5), &Value::Int(1)).unwrap(), Value::Float(1.5));
        assert_eq!(arith("+", &Value::Int(2), &Value::Int(3)).unwrap(), Value::Int(5));
        assert_eq!(arith("*", &Value::Null, &Value::Int(3)).unwrap(), Value::Null);
        assert!(arith("/", &Value::Int(1), &Value::Int(0)).is_err());
        assert_eq!(compare(&Value::Null, &Value::Float(0.0), |o| o.is_gt()).unwrap(), Value::Bool(false));
        assert_eq!(compare(&Value::Float(f64::NAN), &Value::Int(1), |o| o.is_lt()).unwrap(), Value::Bool(false));
    }
}
