//! Rubin (LSST)-shaped alerts after Fink's processing, as in
//! `../shared/data/lsst/science` (schema lsst.v10_0): `diaSource`,
//! `diaObject` (null for known asteroids), `prvDiaSources`, Fink's `xm`,
//! `clf`, `pred` and `misc`, three cutouts. Only the fields Fink's filters
//! and a distribution read are generated, with a spread that makes each
//! catalogue filter keep some alerts and drop others.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema};

use super::Rng;

/// Columns of a struct being built.
#[derive(Default)]
struct Cols {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Cols {
    fn add(&mut self, name: &str, a: ArrayRef) {
        self.fields.push(Field::new(name, a.data_type().clone(), true));
        self.arrays.push(a);
    }
    fn i64(&mut self, name: &str, v: Vec<Option<i64>>) {
        self.add(name, Arc::new(Int64Array::from(v)));
    }
    fn i32(&mut self, name: &str, v: Vec<Option<i32>>) {
        self.add(name, Arc::new(Int32Array::from(v)));
    }
    fn f64(&mut self, name: &str, v: Vec<Option<f64>>) {
        self.add(name, Arc::new(Float64Array::from(v)));
    }
    fn f32(&mut self, name: &str, v: Vec<Option<f32>>) {
        self.add(name, Arc::new(Float32Array::from(v)));
    }
    fn bool(&mut self, name: &str, v: Vec<Option<bool>>) {
        self.add(name, Arc::new(BooleanArray::from(v)));
    }
    fn str(&mut self, name: &str, v: Vec<Option<String>>) {
        self.add(name, Arc::new(StringArray::from(v)));
    }
    fn into_struct(self, valid: Option<Vec<bool>>) -> StructArray {
        StructArray::new(Fields::from(self.fields), self.arrays, valid.map(NullBuffer::from))
    }
}

/// Quality flags Fink's Rubin blocks test (`b_good_quality`).
const FLAGS: &[&str] = &[
    "isDipole",
    "pixelFlags",
    "pixelFlags_bad",
    "pixelFlags_saturated",
    "pixelFlags_streakCenter",
    "pixelFlags_interpolated",
    "pixelFlags_cr",
    "pixelFlags_nodata",
    "pixelFlags_streak",
    "pixelFlags_edge",
    "psfFlux_flag",
    "apFlux_flag",
    "forced_PsfFlux_flag",
    "forced_PsfFlux_flag_edge",
    "shape_flag",
    "centroid_flag",
];

const BANDS: &[&str] = &["u", "g", "r", "i", "z", "y"];

/// SIMBAD types as Fink's xm module writes them (null: no match).
const SIMBAD: &[(&str, u32)] =
    &[("Unknown", 30), ("Fail", 2), ("Star", 10), ("EB*", 5), ("RRLyr", 3), ("QSO", 3), ("Galaxy", 5), ("SN", 2)];

/// nJy of an AB magnitude (Rubin's zero point 31.4).
fn flux(mag: f64) -> f64 {
    10f64.powf((31.4 - mag) / 2.5)
}

/// One Rubin-shaped alert per row; `next_id` numbers the sources.
pub fn batch(rng: &mut Rng, n: usize, next_id: &mut i64, night: usize, pools: &[Vec<Vec<u8>>]) -> RecordBatch {
    let mut ids = Vec::with_capacity(n);
    let mut sso = Vec::with_capacity(n);
    let mut mjd = Vec::with_capacity(n);
    let mut radec = Vec::with_capacity(n);
    for _ in 0..n {
        *next_id += 1 + rng.below(5000) as i64;
        ids.push(169_813_000_000_000_000 + *next_id);
        sso.push(rng.below(10) == 0);
        mjd.push(61041.0 + night as f64 + rng.range(0.0, 0.4));
        // Uniform on the sphere.
        radec.push((rng.range(0.0, 360.0), rng.range(-1.0, 1.0).asin().to_degrees()));
    }
    let object_ids: Vec<i64> = (0..n).map(|_| rng.below(1 << 50) as i64).collect();

    // diaSource
    let mut s = Cols::default();
    s.i64("diaSourceId", ids.iter().map(|i| Some(*i)).collect());
    s.i64("diaObjectId", (0..n).map(|i| (!sso[i]).then_some(object_ids[i])).collect());
    s.i64("ssObjectId", (0..n).map(|i| sso[i].then(|| rng.below(1 << 40) as i64)).collect());
    s.f64("midpointMjdTai", mjd.iter().map(|m| Some(*m)).collect());
    s.f64("ra", radec.iter().map(|r| Some(r.0)).collect());
    s.f64("dec", radec.iter().map(|r| Some(r.1)).collect());
    let negative: Vec<bool> = (0..n).map(|_| rng.below(5) == 0).collect();
    let mags: Vec<f64> = (0..n).map(|_| rng.range(16.0, 24.5)).collect();
    let fluxes: Vec<f64> = (0..n).map(|i| if negative[i] { -flux(mags[i]) } else { flux(mags[i]) }).collect();
    // S/N from about 2 to 200: noise of a fraction of the flux.
    let errs: Vec<f64> = (0..n).map(|i| fluxes[i].abs() / rng.range(2.0, 200.0)).collect();
    s.f32("psfFlux", fluxes.iter().map(|f| Some(*f as f32)).collect());
    s.f32("psfFluxErr", errs.iter().map(|e| Some(*e as f32)).collect());
    s.f32("snr", (0..n).map(|i| Some((fluxes[i].abs() / errs[i]) as f32)).collect());
    s.bool("isNegative", negative.iter().map(|b| Some(*b)).collect());
    s.str("band", (0..n).map(|_| Some(BANDS[rng.below(6) as usize].to_string())).collect());
    s.f32("reliability", (0..n).map(|_| Some(rng.f64() as f32)).collect());
    s.f32("extendedness", (0..n).map(|_| Some(rng.f64() as f32)).collect());
    for f in FLAGS {
        s.bool(f, (0..n).map(|_| Some(rng.below(100) == 0)).collect());
    }
    // Trails (faint_trails): most sources are points, a few long streaks;
    // null where the trail fit failed, as in Rubin's alerts.
    s.f32(
        "trailLength",
        (0..n).map(|_| if rng.below(3) == 0 { None } else { Some(rng.range(0.0, 1.0).powi(3) as f32 * 8.0) }).collect(),
    );
    s.f32("trailFlux", (0..n).map(|i| Some((fluxes[i] * rng.range(0.5, 1.5)) as f32)).collect());
    let dia_source = s.into_struct(None);
    let trail_length = dia_source_trail(&dia_source);

    // prvDiaSources: earlier detections of the object (null for the first).
    let mut offsets = vec![0i32];
    let (mut p_id, mut p_mjd, mut p_band, mut p_flux, mut p_err) = (vec![], vec![], vec![], vec![], vec![]);
    let mut counts = Vec::with_capacity(n);
    let mut prv_valid = Vec::with_capacity(n);
    for i in 0..n {
        let k = if sso[i] { 0 } else { rng.below(12) as usize };
        counts.push(k as i32 + 1);
        prv_valid.push(k > 0);
        for j in 0..k {
            p_id.push(Some(ids[i] - 1 - j as i64));
            p_mjd.push(Some(mjd[i] - (k - j) as f64 * rng.range(0.5, 4.0)));
            p_band.push(Some(BANDS[rng.below(6) as usize].to_string()));
            p_flux.push(Some((fluxes[i] * rng.range(0.5, 1.5)) as f32));
            p_err.push(Some(errs[i] as f32));
        }
        offsets.push(p_id.len() as i32);
    }
    let mut p = Cols::default();
    p.i64("diaSourceId", p_id);
    p.f64("midpointMjdTai", p_mjd);
    p.str("band", p_band);
    p.f32("psfFlux", p_flux);
    p.f32("psfFluxErr", p_err);
    let prv_values = p.into_struct(None);
    let item = Arc::new(Field::new("element", prv_values.data_type().clone(), true));
    let prv = ListArray::new(
        item,
        OffsetBuffer::new(offsets.into()),
        Arc::new(prv_values),
        Some(NullBuffer::from(prv_valid)),
    );

    // diaObject: null for solar system objects.
    let mut o = Cols::default();
    o.i64("diaObjectId", object_ids.iter().map(|i| Some(*i)).collect());
    o.f64("ra", radec.iter().map(|r| Some(r.0)).collect());
    o.f64("dec", radec.iter().map(|r| Some(r.1)).collect());
    o.i32("nDiaSources", counts.iter().map(|c| Some(*c)).collect());
    for b in BANDS {
        o.f32(&format!("{b}_psfFluxMean"), fluxes.iter().map(|f| Some((f.abs() * 0.9) as f32)).collect());
        o.f32(&format!("{b}_psfFluxMeanErr"), errs.iter().map(|e| Some(*e as f32)).collect());
        // The brightest point and the detections in each band (the
        // extragalactic filters' sampling and peak absolute magnitude).
        o.f32(
            &format!("{b}_psfFluxMax"),
            fluxes.iter().map(|f| Some((f.abs() * rng.range(1.0, 1.4)) as f32)).collect(),
        );
        o.i32(&format!("{b}_psfFluxNdata"), counts.iter().map(|c| Some(rng.below(*c as u64 + 1) as i32)).collect());
    }
    let dia_object = o.into_struct(Some(sso.iter().map(|s| !s).collect()));

    // Fink's cross-matches, classifiers and predictions.
    let mut x = Cols::default();
    x.str(
        "simbad_otype",
        (0..n).map(|_| if rng.below(5) < 2 { None } else { Some(super::pick(rng, SIMBAD).to_string()) }).collect(),
    );
    x.str(
        "tns_fullname",
        (0..n).map(|_| (rng.below(100) < 3).then(|| format!("2026{}", rng.below(100_000)))).collect(),
    );
    // Mangrove galaxies (luminosity distance, Mpc), Gaia DR3 stars with
    // their parallaxes and VSX variables: matched for a minority of alerts,
    // as in Fink's cross-match (fink-filters' extragalactic blocks).
    x.f32("mangrove_lum_dist", (0..n).map(|_| (rng.below(10) < 3).then(|| rng.range(5.0, 400.0) as f32)).collect());
    let gaia: Vec<bool> = (0..n).map(|_| rng.below(10) < 2).collect();
    x.str("gaiadr3_DR3Name", gaia.iter().map(|g| g.then(|| format!("Gaia DR3 {}", rng.below(1 << 62)))).collect());
    x.f32("gaiadr3_Plx", gaia.iter().map(|g| g.then(|| rng.range(-0.5, 5.0) as f32)).collect());
    x.f32("gaiadr3_e_Plx", gaia.iter().map(|g| g.then(|| rng.range(0.02, 1.0) as f32)).collect());
    x.str(
        "vsx_Type",
        (0..n)
            .map(|_| {
                (rng.below(20) == 0)
                    .then(|| super::pick(rng, &[("EA", 3), ("RRAB", 2), ("M", 1), ("ROT", 2), ("SR", 1)]).to_string())
            })
            .collect(),
    );
    x.f32(
        "legacydr8_zphot",
        (0..n).map(|_| if rng.below(3) == 0 { None } else { Some(rng.range(0.0, 1.2) as f32) }).collect(),
    );
    let xm = x.into_struct(None);
    let mut c = Cols::default();
    c.f32("snnSnVsOthers_score", (0..n).map(|_| Some(rng.f64().powf(1.5) as f32)).collect());
    c.i32("cats_class", (0..n).map(|_| Some([11, 11, 12, 13, 21, 22, 31, 32][rng.below(8) as usize])).collect());
    c.f32("cats_score", (0..n).map(|_| Some(rng.f64().sqrt() as f32)).collect());
    c.f64("earlySNIa_score", (0..n).map(|_| Some(rng.f64())).collect());
    c.f32("elephant_kstest_science", (0..n).map(|_| Some(rng.f64() as f32)).collect());
    c.f32(
        "elephant_kstest_template",
        (0..n).map(|_| if rng.below(10) == 0 { None } else { Some(rng.f64() as f32) }).collect(),
    );
    let clf = c.into_struct(None);
    let mut pr = Cols::default();
    pr.fields.push(Field::new("is_sso", DataType::Boolean, false));
    pr.arrays.push(Arc::new(BooleanArray::from(sso.clone())));
    pr.bool("is_first", counts.iter().map(|c| Some(*c == 1)).collect());
    pr.bool("is_cataloged", (0..n).map(|_| Some(rng.below(2) == 0)).collect());
    let pred = pr.into_struct(None);
    let mut m = Cols::default();
    m.f64("firstDiaSourceMjdTaiFink", (0..n).map(|i| Some(mjd[i] - counts[i] as f64)).collect());
    let misc = m.into_struct(None);

    let mut top = Cols::default();
    top.i64("diaSourceId", ids.iter().map(|i| Some(*i)).collect());
    top.add("diaSource", Arc::new(dia_source));
    top.add("prvDiaSources", Arc::new(prv));
    top.add("diaObject", Arc::new(dia_object));
    // Rubin's cutouts: uncompressed FITS, three HDUs (image, variance,
    // mask) of 30x30 pixels, 34,560 bytes as in the sample alerts. A source
    // with a long trail gets a streak (faint_trails measures elongation).
    let points = &pools[0];
    let streaks = &pools[1];
    let trailed: Vec<bool> = trail_length.iter().map(|l| l.is_some_and(|l| l > 2.0)).collect();
    for (k, name) in ["cutoutDifference", "cutoutScience", "cutoutTemplate"].iter().enumerate() {
        let stamps: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let pool = if trailed[i] && k != 2 { streaks } else { points };
                let mut stamp = pool[rng.below(pool.len() as u64) as usize].clone();
                // Each stamp its own bytes, in the last HDU's padding: the
                // images stay as they are.
                let l = stamp.len();
                stamp[l - 8..l - 4].copy_from_slice(&(ids[i] as u32).to_le_bytes());
                stamp
            })
            .collect();
        top.add(name, Arc::new(BinaryArray::from_iter_values(stamps.iter())));
    }
    top.str("lsst_schema_version", vec![Some("lsst.v10_0".into()); n]);
    top.add("xm", Arc::new(xm));
    top.add("clf", Arc::new(clf));
    top.add("pred", Arc::new(pred));
    top.add("misc", Arc::new(misc));
    let schema = Arc::new(Schema::new(top.fields));
    RecordBatch::try_new(schema, top.arrays).expect("columns match the schema")
}

fn dia_source_trail(dia_source: &StructArray) -> Vec<Option<f32>> {
    use arrow_array::cast::AsArray;
    dia_source
        .column_by_name("trailLength")
        .map(|c| c.as_primitive::<arrow_array::types::Float32Type>().iter().collect())
        .unwrap_or_default()
}

/// The cutout pools of a Rubin simulation: point sources, then streaks.
pub fn cutout_pools(rng: &mut Rng) -> Vec<Vec<Vec<u8>>> {
    vec![(0..48).map(|_| rubin_cutout(rng, false)).collect(), (0..16).map(|_| rubin_cutout(rng, true)).collect()]
}

/// One FITS HDU: a header of two 2880-byte blocks (Rubin's carry WCS and
/// provenance cards) and 30x30 float32 pixels.
fn hdu(first: bool, pixels: &[f32]) -> Vec<u8> {
    let mut cards: Vec<String> = vec![
        if first { "SIMPLE  =                    T".into() } else { "XTENSION= 'IMAGE   '".into() },
        "BITPIX  =                  -32".into(),
        "NAXIS   =                    2".into(),
        "NAXIS1  =                   30".into(),
        "NAXIS2  =                   30".into(),
    ];
    if !first {
        cards.push("PCOUNT  =                    0".into());
        cards.push("GCOUNT  =                    1".into());
    }
    cards.push("ORIGIN  = 'fink simulate'".into());
    while cards.len() < 40 {
        cards.push(format!("COMMENT card {} of the simulated header", cards.len()));
    }
    cards.push("END".into());
    let mut out: Vec<u8> = cards.iter().flat_map(|c| format!("{c:<80}").into_bytes()).collect();
    out.resize(2 * 2880, b' ');
    for p in pixels {
        out.extend_from_slice(&p.to_be_bytes());
    }
    out.resize(4 * 2880, 0);
    out
}

/// Image, variance and mask of a point source or a streak.
fn rubin_cutout(rng: &mut Rng, streak: bool) -> Vec<u8> {
    let (cx, cy) = (rng.range(13.0, 17.0), rng.range(13.0, 17.0));
    let amp = rng.range(50.0, 2000.0);
    let angle = rng.range(0.0, std::f64::consts::PI);
    let (ux, uy) = (angle.cos(), angle.sin());
    let mut image = Vec::with_capacity(900);
    for y in 0..30 {
        for x in 0..30 {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            // Distance to the source: to its centre, or to a 16-pixel segment.
            let r2 = if streak {
                let t = (dx * ux + dy * uy).clamp(-8.0, 8.0);
                (dx - t * ux).powi(2) + (dy - t * uy).powi(2)
            } else {
                dx * dx + dy * dy
            };
            image.push((rng.normal(0.0, 8.0) + amp * (-r2 / 2.0).exp()) as f32);
        }
    }
    let variance = vec![64.0f32; 900];
    let mask = vec![0.0f32; 900];
    let mut out = hdu(true, &image);
    out.extend(hdu(false, &variance));
    out.extend(hdu(false, &mask));
    out
}
